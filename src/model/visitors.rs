//! The module visitors and mappers behind [`Net`](super::Net)'s methods: path-derived
//! parameter ids, forced initialisation, finiteness checks, dtype casts, flattening, the
//! moving average and the parameter list. Separate because they are burn plumbing, not the
//! model contract.

use std::collections::HashMap;

use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{FloatDType, Tensor};

use super::ParamMeta;

/// Tracks the module path during a traversal.
#[derive(Default)]
pub(super) struct PathStack(Vec<String>);

impl PathStack {
    fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }
    fn exit(&mut self) {
        self.0.pop();
    }
    fn path(&self) -> String {
        self.0.join(".")
    }
}

/// Sets each parameter's id from a hash of its module path.
#[derive(Default)]
pub(super) struct PathIds(PathStack);

impl ModuleMapper for PathIds {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.0.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.0.exit();
    }
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.id = path_id(&self.0.path());
        param
    }
}

fn path_id(path: &str) -> ParamId {
    let hash = blake3::hash(path.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    ParamId::from(u64::from_le_bytes(first))
}

/// Reads every float parameter, which initialises lazy ones.
pub(super) struct ForceInit;

impl ModuleVisitor for ForceInit {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

#[derive(Default)]
pub(super) struct FiniteCheck {
    path: PathStack,
    pub(super) first_bad: Option<String>,
}

impl ModuleVisitor for FiniteCheck {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.first_bad.is_none() && !param.val().is_finite().all().into_scalar::<bool>() {
            self.first_bad = Some(self.path.path());
        }
    }
}

/// Casts every parameter to a float dtype, keeping its id and whether it is trainable.
pub(super) struct CastParams(pub(super) FloatDType);

impl ModuleMapper for CastParams {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, value, mapper) = param.consume();
        let tracked = value.is_autodiff();
        let require_grad = value.is_require_grad();
        let cast = value.inner().cast(self.0);
        let value = if tracked {
            let value = Tensor::from_inner(cast);
            if require_grad {
                value.require_grad()
            } else {
                value
            }
        } else {
            cast
        };
        Param::from_mapped_value(id, value, mapper)
    }
}

/// Converts gradients to a dtype and scales them, parameter by parameter.
pub(super) struct CastGradients<'a> {
    pub(super) grads: &'a mut GradientsParams,
    pub(super) dtype: FloatDType,
    pub(super) scale: f64,
}

impl ModuleVisitor for CastGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            let mut grad = grad.cast(self.dtype);
            if self.scale != 1.0 {
                grad = grad.mul_scalar(self.scale);
            }
            self.grads.register(param.id, grad);
        }
    }
}

/// Collects detached, flattened parameter values by id.
#[derive(Default)]
pub(super) struct FlatParams(pub(super) HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for FlatParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val().inner();
        let n = value.shape().num_elements();
        self.0.insert(param.id, value.reshape([n]));
    }
}

/// One step of an exponential moving average towards `raw`'s values.
pub(super) struct Ema {
    pub(super) raw: HashMap<ParamId, Tensor<1>>,
    pub(super) decay: f64,
}

impl ModuleMapper for Ema {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(raw) = self.raw.remove(&param.id) else {
            return param;
        };
        let decay = self.decay;
        param.map(|ema| {
            let dims = ema.dims();
            if raw.dims()[0] != ema.shape().num_elements() {
                return ema;
            }
            ema.mul_scalar(decay) + raw.reshape(dims).mul_scalar(1.0 - decay)
        })
    }
}

#[derive(Default)]
pub(super) struct ParamLister {
    path: PathStack,
    pub(super) params: Vec<ParamMeta>,
}

impl ModuleVisitor for ParamLister {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.params.push(ParamMeta {
            id: param.id,
            path: self.path.path(),
            rank: D,
            shape: param.val().dims().to_vec(),
        });
    }
}
