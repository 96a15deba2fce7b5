//! `--filter` conditions, one parser and one matcher for both places that filter: a build's
//! selection (`hft build --filter optimizer.type=muon`, matched against each resolved
//! config) and `hft compare` (`--filter 'backtest.strategy.sharpe>1'`, matched against the
//! catalog's cells).
//!
//! A condition is `KEY OP VALUE`, OP one of `=` (or `==`), `!=`, `>`, `>=`, `<`, `<=`, `~`
//! (contains), split at the leftmost operator: the key is a dotted path, the value may hold
//! anything (`name=a>=b` is the name `a>=b`). The two places differ only in what they
//! compare: a resolved config value is compared with the value typed as YAML would type it
//! (64 and 64.0 are equal), a catalog cell as text or, when both parse, as numbers; and each
//! keeps its own messages.

use serde_json::Value;

/// A comparison operator of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
}

impl Op {
    /// The operator as written (`==` reads as `=`).
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Contains => "~",
        }
    }

    fn orders(self) -> bool {
        matches!(self, Op::Gt | Op::Ge | Op::Lt | Op::Le)
    }

    fn order(self, a: f64, b: f64) -> bool {
        match self {
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            _ => false,
        }
    }
}

/// Operators, longest first so that `>=` is not read as `>` at the same position.
const OPERATORS: [(&str, Op); 8] = [
    ("!=", Op::Ne),
    (">=", Op::Ge),
    ("<=", Op::Le),
    ("==", Op::Eq),
    ("~", Op::Contains),
    ("=", Op::Eq),
    (">", Op::Gt),
    ("<", Op::Lt),
];

/// One `--filter`: `KEY OP VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The dotted path, trimmed (may be empty: see [`Condition::parse_for_catalog`]).
    pub key: String,
    pub op: Op,
    /// The value as written after the operator.
    raw: String,
    /// The value trimmed of spaces and double quotes (how a catalog cell compares).
    value: String,
    /// For `=` / `!=` in a selection: the value typed as YAML would type it.
    typed: Option<Value>,
}

/// Why a condition did not parse; each command words it its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterError {
    /// No operator at all.
    NoOperator,
    /// `>`, `>=`, `<`, `<=` with a value that is not a number.
    NotANumber { value: String, op: &'static str },
}

impl Condition {
    /// Splits `text` at its leftmost operator.
    pub fn parse(text: &str) -> Result<Condition, FilterError> {
        let found = text.char_indices().find_map(|(at, _)| {
            OPERATORS
                .iter()
                .find(|(symbol, _)| text[at..].starts_with(symbol))
                .map(|&(symbol, op)| (at, symbol, op))
        });
        let Some((at, symbol, op)) = found else {
            return Err(FilterError::NoOperator);
        };
        let raw = &text[at + symbol.len()..];
        let value = raw.trim().trim_matches('"').to_string();
        if op.orders() && value.parse::<f64>().is_err() {
            return Err(FilterError::NotANumber {
                value,
                op: op.symbol(),
            });
        }
        Ok(Condition {
            key: text[..at].trim().to_string(),
            op,
            raw: raw.to_string(),
            value,
            typed: None,
        })
    }

    /// A condition of `hft compare`, with its messages (a key is required).
    pub fn parse_for_catalog(text: &str) -> Result<Condition, String> {
        let generic = || {
            format!(
                "--filter `{text}`: expected KEY OP VALUE with OP one of = != > >= < <= ~ \
                 (e.g. `backtest.strategy.sharpe>1` or `model.type=lstm`)"
            )
        };
        match Condition::parse(text) {
            Ok(c) if c.key.is_empty() => Err(generic()),
            Ok(c) => Ok(c),
            Err(FilterError::NoOperator) => Err(generic()),
            Err(e) => Err(not_a_number(text, &e)),
        }
    }

    /// A condition of a build's selection (`--filter PATH=VALUE`), with its messages; the
    /// value of `=` and `!=` is typed as YAML would type it.
    pub fn parse_for_selection(text: &str) -> Result<Condition, String> {
        let mut c = match Condition::parse(text) {
            Ok(c) => c,
            Err(FilterError::NoOperator) => {
                return Err(format!("--filter {text}: expected PATH=VALUE"));
            }
            Err(e) => return Err(not_a_number(text, &e)),
        };
        if matches!(c.op, Op::Eq | Op::Ne) {
            let node = crate::config::located::parse(&c.raw, "--filter")
                .map_err(|(_, m)| format!("--filter {text}: {m}"))?;
            c.typed = Some(node.to_json(&mut crate::config::LocationMap::default()));
        }
        Ok(c)
    }

    /// Whether a catalog cell (text; a config value as its JSON text) matches. A missing
    /// cell matches only `!=`.
    pub fn matches_cell(&self, have: Option<&str>) -> bool {
        let Some(have) = have else {
            return self.op == Op::Ne;
        };
        let have = have.trim_matches('"');
        let numbers = have.parse::<f64>().ok().zip(self.value.parse::<f64>().ok());
        match (self.op, numbers) {
            (Op::Eq, Some((a, b))) => a == b,
            (Op::Eq, None) => have == self.value,
            (Op::Ne, Some((a, b))) => a != b,
            (Op::Ne, None) => have != self.value,
            (Op::Contains, _) => have.contains(&self.value),
            (op, Some((a, b))) => op.order(a, b),
            _ => false,
        }
    }

    /// Whether an experiment's resolved config (as JSON) matches at this condition's key.
    pub fn matches_config(&self, config: &Value) -> bool {
        let pointer = format!("/{}", self.key.replace('.', "/"));
        let have = config.pointer(&pointer);
        let equal = |have: &Value| match &self.typed {
            // 64 and 64.0 are the same value.
            Some(want) => {
                have == want || (have.as_f64().is_some() && have.as_f64() == want.as_f64())
            }
            None => false,
        };
        match (self.op, have) {
            (Op::Eq, Some(have)) => equal(have),
            (Op::Ne, Some(have)) => !equal(have),
            (Op::Ne, None) => true,
            (Op::Contains, Some(Value::String(s))) => s.contains(&self.value),
            (Op::Contains, Some(have)) => have.to_string().contains(&self.value),
            (op, Some(have)) => match (have.as_f64(), self.value.parse::<f64>()) {
                (Some(a), Ok(b)) => op.order(a, b),
                _ => false,
            },
            (_, None) => false,
        }
    }
}

fn not_a_number(text: &str, e: &FilterError) -> String {
    match e {
        FilterError::NotANumber { value, op } => format!(
            "--filter `{text}`: `{value}` is not a number ({op} compares numbers; use = or ~ \
             for text)"
        ),
        FilterError::NoOperator => format!("--filter `{text}`: no operator"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_parse_every_operator_and_reject_nonsense() {
        assert_eq!(Condition::parse("a>=1").unwrap().op, Op::Ge);
        assert_eq!(Condition::parse("a<=1").unwrap().op, Op::Le);
        assert_eq!(Condition::parse("a!=1").unwrap().op, Op::Ne);
        assert_eq!(Condition::parse("a==1").unwrap().op, Op::Eq);
        assert_eq!(Condition::parse("a~ls").unwrap().op, Op::Contains);
        assert!(Condition::parse_for_catalog("sharpe").is_err());
        assert!(Condition::parse_for_catalog(">1").is_err());
        assert!(Condition::parse_for_catalog("a>x").is_err());
    }

    #[test]
    fn the_leftmost_operator_splits_so_values_may_hold_operators() {
        let c = Condition::parse_for_selection("name=a>=b").unwrap();
        assert_eq!((c.key.as_str(), c.op), ("name", Op::Eq));
        assert!(c.matches_config(&json!({"name": "a>=b"})));
    }

    #[test]
    fn selection_messages_are_the_builds() {
        assert_eq!(
            Condition::parse_for_selection("model.type").unwrap_err(),
            "--filter model.type: expected PATH=VALUE"
        );
        assert!(
            Condition::parse_for_selection("x=[1")
                .unwrap_err()
                .starts_with("--filter x=[1: ")
        );
    }

    #[test]
    fn config_values_compare_typed_and_numbers_by_value() {
        let config = json!({"training": {"epochs": 64.0}, "model": {"type": "lstm"}, "optimizer": {"lr": 0.001}});
        let yes = |f: &str| {
            Condition::parse_for_selection(f)
                .unwrap()
                .matches_config(&config)
        };
        assert!(yes("training.epochs=64"));
        assert!(yes("model.type=lstm"));
        assert!(yes("model.type = lstm"));
        assert!(!yes("model.type=gru"));
        assert!(!yes("model.kind=lstm"));
        assert!(yes("model.type!=gru"));
        assert!(yes("optimizer.lr<0.01"));
        assert!(!yes("optimizer.lr>=0.01"));
        assert!(yes("model.type~ls"));
    }

    #[test]
    fn catalog_cells_compare_as_text_or_numbers() {
        let c = |f: &str| Condition::parse_for_catalog(f).unwrap();
        assert!(c("optimizer.lr = 0.1").matches_cell(Some("0.1")));
        assert!(c("model.type=lstm").matches_cell(Some("\"lstm\"")));
        assert!(c("sharpe>0").matches_cell(Some("0.5")));
        assert!(!c("sharpe>0").matches_cell(Some("-0.2")));
        assert!(c("sharpe!=1").matches_cell(None));
        assert!(!c("sharpe=1").matches_cell(None));
    }
}
