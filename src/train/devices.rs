//! Opening the devices a training computes on: `training.device`, every device of
//! `training.devices` (data parallel), and whether they can compute in
//! `training.precision`. Separate from the loop because it is about the machine, not the
//! model: backends compiled in or not, device counts, drivers that panic when listed.

use burn::tensor::{DType, Device, FloatDType};

use super::TrainError;
use crate::config::TrainingConfig;
use crate::config::sections::{Backend, Devices, Precision};

/// The device a run computes on and the float format of its forward and backward passes
/// (`None`: f32 throughout).
pub(super) struct Compute {
    /// Without autodiff; training adds it. The first of `training.devices`: it holds the
    /// master weights and the optimizer, and validates.
    pub(super) device: Device,
    /// The other devices of `training.devices` (data parallel); empty on one device.
    pub(super) further: Vec<Device>,
    pub(super) dtype: Option<FloatDType>,
}

/// Opens `training.device` (and every device of `training.devices`) and checks it can
/// compute in `training.precision`. Backends missing from this build are config errors (the
/// loader reports them before anything runs); this repeats the check for configs built in
/// code.
pub(super) fn open_device(t: &TrainingConfig) -> Result<Compute, TrainError> {
    let config = |(key, message): (String, String)| TrainError::Config(format!("{key}: {message}"));
    let backend = t.backend().map_err(config)?;
    let (device, further) = if t.devices == Devices::default() {
        // One device: exactly the device `training.device` names.
        (open_backend(backend, None)?, Vec::new())
    } else {
        let indices = t.devices.indices();
        let available = device_count(backend)?;
        if let Some(&missing) = indices.iter().find(|&&i| i >= available) {
            return Err(TrainError::Config(format!(
                "training.devices: asks for {} device {missing}, but this machine has {available}                  {} device(s) (indices 0..{available}); list fewer devices",
                backend.kind(),
                backend.kind(),
            )));
        }
        let mut opened = indices
            .iter()
            .map(|&i| open_backend(backend, Some(i)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let Some(first) = opened.next() else {
            return Err(TrainError::Config(
                "training.devices: must name at least one device".into(),
            ));
        };
        (first, opened.collect())
    };
    let dtype = match t.precision {
        Precision::F32 => None,
        Precision::Bf16 => Some(FloatDType::BF16),
        Precision::F16 => Some(FloatDType::F16),
    };
    if let Some(dtype) = dtype
        && (!backend.trains_in(t.precision)
            || !std::iter::once(&device)
                .chain(&further)
                .all(|d| d.supports_dtype(DType::from(dtype))))
    {
        return Err(TrainError::Config(format!(
            "training.precision: the {} device cannot compute in {}; use f32",
            t.device,
            t.precision.name()
        )));
    }
    Ok(Compute {
        device,
        further,
        dtype,
    })
}

/// Device `index` of `backend` (`None`: the one `training.device` names).
fn open_backend(backend: Backend, index: Option<usize>) -> Result<Device, TrainError> {
    let _ = index;
    Ok(match backend {
        Backend::Cpu => Device::flex(),
        #[cfg(feature = "wgpu")]
        Backend::Wgpu => match index {
            None => Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            // wgpu's own numbering is per adapter type: take the index-th adapter listed.
            Some(i) => wgpu_devices()?.into_iter().nth(i).ok_or_else(|| {
                TrainError::Config(format!("training.devices: no wgpu device {i}"))
            })?,
        },
        #[cfg(feature = "cuda")]
        Backend::Cuda(named) => Device::cuda(index.unwrap_or(named)),
        #[allow(unreachable_patterns)]
        other => {
            return Err(TrainError::Config(format!(
                "training.device: the {kind} backend is not compiled into this build; rebuild \
                 with `--features {kind}`",
                kind = other.kind(),
            )));
        }
    })
}

/// How many devices `backend` has on this machine. Enumerating a GPU runtime without a
/// driver can panic inside it: that is an error here, not a crash.
fn device_count(backend: Backend) -> Result<usize, TrainError> {
    let listed = std::panic::catch_unwind(|| -> Result<usize, TrainError> {
        Ok(match backend {
            Backend::Cpu => 1,
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => wgpu_devices()?.len(),
            #[cfg(feature = "cuda")]
            Backend::Cuda(_) => Device::enumerate(burn::tensor::DeviceType::Cuda).len(),
            #[allow(unreachable_patterns)]
            _ => 0,
        })
    });
    listed.unwrap_or_else(|_| {
        Err(TrainError::Config(format!(
            "training.devices: listing the {} devices failed (no driver or no device?)",
            backend.kind()
        )))
    })
}

#[cfg(feature = "wgpu")]
fn wgpu_devices() -> Result<Vec<Device>, TrainError> {
    Ok(Device::enumerate(burn::tensor::DeviceType::Wgpu)
        .into_iter()
        .collect())
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::cfg;
    use crate::train::tests::{opt, quiet, run, tcfg, toy_dataset};

    /// `training.devices` > 1 on the one-device cpu backend never reaches the loop.
    #[test]
    fn several_devices_on_cpu_are_a_config_error() {
        let data = toy_dataset([8, 0, 0], 1);
        let t = TrainingConfig {
            devices: Devices::Count(2),
            ..tcfg(1, 4)
        };
        let Err(err) = run(&data, &quiet(cfg("mlp")), &opt(1e-2), &t, 1) else {
            panic!("two devices on cpu trained");
        };
        assert!(matches!(err, TrainError::Config(_)), "{err}");
        assert!(err.to_string().contains("training.devices"), "{err}");
    }

    #[test]
    fn a_backend_missing_from_the_build_is_a_clear_error() {
        let data = toy_dataset([8, 0, 0], 17);
        let t = TrainingConfig {
            device: "cuda:1".into(),
            ..tcfg(1, 8)
        };
        if !cfg!(feature = "cuda") {
            let err = run(&data, &cfg("mlp"), &opt(1e-3), &t, 1).err().unwrap();
            assert!(err.to_string().contains("--features cuda"), "{err}");
        }
        let t = TrainingConfig {
            device: "tpu".into(),
            ..tcfg(1, 8)
        };
        let err = run(&data, &cfg("mlp"), &opt(1e-3), &t, 1).err().unwrap();
        assert!(err.to_string().contains("unknown device `tpu`"), "{err}");
    }
}
