//! The two output heads every model ends with.

use burn::module::{Initializer, Module};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use super::Forecast;

/// A small MLP: `Linear(d, d) -> GELU -> Linear(d, out)`, its output layer zero-initialised:
/// an untrained head outputs 0, so an untrained model forecasts no move (persistence: the
/// price targets are returns scaled by their train std, not centred) and no preferred
/// action (uniform logits). Training has to earn every departure from that null forecast,
/// and `training.select: best_val` keeps it (epoch 0) when none is earned.
#[derive(Module, Debug)]
pub struct Head {
    hidden: Linear,
    out: Linear,
}

impl Head {
    pub(super) fn new(d: usize, out: usize, device: &Device) -> Self {
        Head {
            hidden: LinearConfig::new(d, d).init(device),
            out: LinearConfig::new(d, out)
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    pub(super) fn forward(&self, h: Tensor<2>) -> Tensor<2> {
        self.out.forward(gelu(self.hidden.forward(h)))
    }
}

/// Price head (`horizon` returns) and action head (3 logits) over a summary vector.
#[derive(Module, Debug)]
pub struct Heads {
    price: Head,
    action: Head,
}

impl Heads {
    pub fn new(d: usize, horizon: usize, device: &Device) -> Self {
        Heads {
            price: Head::new(d, horizon, device),
            action: Head::new(d, 3, device),
        }
    }

    /// `h`: `[batch, d]`.
    pub fn forward(&self, h: Tensor<2>) -> Forecast {
        Forecast {
            price: self.price.forward(h.clone()),
            action: self.action.forward(h),
            band: None,
        }
    }
}
