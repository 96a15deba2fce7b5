//! Values of a search space: drawing them, rounding them to what a trial's name shows, and
//! the continuous coordinates TPE models them in.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::Value;

use crate::config::search::Domain;

/// Significant digits kept of a real value: the trial's config holds exactly what its name
/// shows, and nothing hangs on a last bit.
const SIGNIFICANT: usize = 4;

/// The random stream of one trial's proposal: a function of the search's seed, the trial's
/// index and what is drawn (`purpose`), independent of everything else proposed.
pub fn stream(seed: u64, trial: usize, purpose: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((trial as u64) << 8) | (purpose & 0xff));
    rng
}

/// A uniform draw from [0, 1) with 53 random bits.
pub fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal draw (Box-Muller with libm's functions, so every machine draws the same).
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - unit(rng);
    let u2 = unit(rng);
    libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * std::f64::consts::PI * u2)
}

/// `x` to [`SIGNIFICANT`] significant digits.
pub fn round_significant(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.prec$e}", prec = SIGNIFICANT - 1)
        .parse()
        .unwrap_or(x)
}

/// The domain in TPE's coordinates: a real interval (logarithmic for the log domains, widened
/// by half a unit for whole numbers) or a number of choices.
pub enum Coordinates {
    Interval { low: f64, high: f64 },
    Choices(usize),
}

impl Domain {
    pub fn coordinates(&self) -> Coordinates {
        match self {
            Domain::Uniform([lo, hi]) => Coordinates::Interval {
                low: *lo,
                high: *hi,
            },
            Domain::LogUniform([lo, hi]) => Coordinates::Interval {
                low: libm::log(*lo),
                high: libm::log(*hi),
            },
            Domain::Int([lo, hi]) => Coordinates::Interval {
                low: *lo as f64 - 0.5,
                high: *hi as f64 + 0.5,
            },
            Domain::LogInt([lo, hi]) => Coordinates::Interval {
                low: libm::log(*lo as f64 - 0.5),
                high: libm::log(*hi as f64 + 0.5),
            },
            Domain::Choice(values) => Coordinates::Choices(values.len()),
        }
    }

    /// The value at coordinate `t` (an index for choices), rounded and inside the domain.
    pub fn value_at(&self, t: f64) -> Value {
        match self {
            Domain::Uniform([lo, hi]) => real(round_significant(t).clamp(*lo, *hi)),
            Domain::LogUniform([lo, hi]) => real(round_significant(libm::exp(t)).clamp(*lo, *hi)),
            Domain::Int([lo, hi]) => Value::from((libm::round(t) as i64).clamp(*lo, *hi)),
            Domain::LogInt([lo, hi]) => {
                Value::from((libm::round(libm::exp(t)) as i64).clamp(*lo, *hi))
            }
            Domain::Choice(values) => values[(t as usize).min(values.len() - 1)].clone(),
        }
    }

    /// Where `value` (one of this domain's) sits in TPE's coordinates.
    pub fn coordinate_of(&self, value: &Value) -> Option<f64> {
        match self {
            Domain::Uniform(_) | Domain::Int(_) => value.as_f64(),
            Domain::LogUniform(_) | Domain::LogInt(_) => {
                value.as_f64().filter(|x| *x > 0.0).map(libm::log)
            }
            Domain::Choice(values) => values.iter().position(|v| v == value).map(|i| i as f64),
        }
    }

    /// A uniform draw from the domain (uniform in the logarithm for the log domains).
    pub fn draw(&self, rng: &mut ChaCha8Rng) -> Value {
        match self.coordinates() {
            Coordinates::Interval { low, high } => self.value_at(low + (high - low) * unit(rng)),
            Coordinates::Choices(n) => self.value_at(((unit(rng) * n as f64) as usize) as f64),
        }
    }
}

/// A real number as JSON; a whole one keeps a fraction so it stays a float in YAML.
fn real(x: f64) -> Value {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A value as a trial's name shows it: strings bare, everything else as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_their_domain_and_are_rounded() {
        let lr = Domain::LogUniform([1e-4, 1e-2]);
        let layers = Domain::Int([1, 3]);
        let width = Domain::Choice(vec![Value::from(32), Value::from(64)]);
        let mut seen_layers = [false; 3];
        for trial in 0..200 {
            let mut rng = stream(7, trial, 0);
            let x = lr.draw(&mut rng).as_f64().unwrap();
            assert!((1e-4..=1e-2).contains(&x), "{x}");
            assert_eq!(round_significant(x), x);
            assert!(text(&Value::from(x)).len() <= 12, "{x}");
            let n = layers.draw(&mut rng).as_i64().unwrap();
            seen_layers[(n - 1) as usize] = true;
            assert!(width.draw(&mut rng).as_i64().is_some());
        }
        assert_eq!(seen_layers, [true; 3], "every whole number is drawn");
    }

    #[test]
    fn streams_are_fixed_by_seed_and_trial() {
        let draw = |seed, trial| unit(&mut stream(seed, trial, 0));
        assert_eq!(draw(1, 5), draw(1, 5));
        assert_ne!(draw(1, 5), draw(1, 6));
        assert_ne!(draw(1, 5), draw(2, 5));
        assert_eq!(round_significant(0.000123456), 0.0001235);
    }
}
