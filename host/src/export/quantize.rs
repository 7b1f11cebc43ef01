//! Post-training int8 quantization of the exported graph.
//!
//! Weights: per output channel, symmetric, int8 in [−127, 127], scale
//! `max|W_c| / 127`. Activations: per tensor, zero point 0, with the range r
//! the 99.99th percentile of |x| over the calibration images (a few outliers
//! do not coarsen everyone's grid); tensors that are never
//! negative — ReLU outputs, and Conv outputs that only feed a ReLU (whose
//! clipping the quantizer then does) — use uint8 with scale r/255, the others
//! int8 with scale r/127.
//! The graph is written in ONNX's QDQ form — every Conv reads
//! `DequantizeLinear(QuantizeLinear(x))` and `DequantizeLinear(W_int8)`, and
//! its output passes through QuantizeLinear → DequantizeLinear — which is the
//! standard interchange form: onnxruntime runs it, and the device rewrites it
//! at load time to plain f32 or to QLinearConv (see the device's `forms`).
//!
//! Ranges are measured by running the fp32 export with tract, with every Conv
//! input and output added as a graph output.

use std::collections::BTreeMap;
use std::io::Cursor;

use anyhow::{ensure, Context, Result};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// What calibration saw of one tensor of the fp32 graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorRange {
    /// [`CALIBRATION_PERCENTILE`] of |x| over all images.
    pub percentile_abs: f32,
    /// Max |x| over all images.
    pub max_abs: f32,
    /// Smallest value seen.
    pub min: f32,
    /// The tensor's only consumer is a ReLU.
    pub relu_follows: bool,
}

impl TensorRange {
    /// Quantization of this tensor: (scale, unsigned).
    pub fn quantization(&self) -> (f32, bool) {
        let unsigned = self.min >= 0.0 || self.relu_follows;
        let levels = if unsigned { 255.0 } else { 127.0 };
        (scale_for(self.percentile_abs, levels), unsigned)
    }
}

/// Ranges per tensor name of the fp32 graph.
pub type Calibration = BTreeMap<String, TensorRange>;

pub const CALIBRATION_METHOD: &str = "percentile 99.99 of |x|, uint8 for non-negative tensors";

/// Scale mapping `range` onto `levels` steps (never zero, so a dead tensor
/// stays finite).
pub fn scale_for(range: f32, levels: f32) -> f32 {
    if range > 0.0 && range.is_finite() {
        range / levels
    } else {
        1.0
    }
}

/// Per-output-channel symmetric quantization of `weights` (`channels` rows):
/// (int8 values, scales).
pub fn quantize_per_channel(weights: &[f64], channels: usize) -> (Vec<i8>, Vec<f32>) {
    let per_channel = weights.len() / channels;
    let mut values = Vec::with_capacity(weights.len());
    let mut scales = Vec::with_capacity(channels);
    for row in weights.chunks(per_channel) {
        let max = row.iter().fold(0f64, |m, v| m.max(v.abs())) as f32;
        let scale = scale_for(max, 127.0);
        scales.push(scale);
        values.extend(row.iter().map(|&v| {
            let q = (v / f64::from(scale)).round().clamp(-127.0, 127.0);
            q as i8
        }));
    }
    (values, scales)
}

/// Names of the tensors whose ranges the int8 graph needs: every Conv's data
/// input and output.
fn conv_tensors(graph: &pb::GraphProto) -> Vec<String> {
    let mut names: Vec<String> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv")
        .flat_map(|n| [n.input[0].clone(), n.output[0].clone()])
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Whether the only consumer of `name` is a Relu.
fn only_relu_reads(graph: &pb::GraphProto, name: &str) -> bool {
    let readers: Vec<&pb::NodeProto> = graph
        .node
        .iter()
        .filter(|n| n.input.iter().any(|i| i == name))
        .collect();
    matches!(readers.as_slice(), [only] if only.op_type == "Relu")
        && !graph.output.iter().any(|o| o.name == name)
}

/// Fraction of |x| values (pooled over the calibration images) the range
/// covers; the rest saturates. Found on the demo model: plain max-abs gave
/// 98.2 % top-1 agreement with fp32, this percentile more (see models/README.md).
pub const CALIBRATION_PERCENTILE: f64 = 0.9999;
const HISTOGRAM_BINS: usize = 4096;

/// Measures the range of every Conv input/output of an fp32 export over
/// `inputs` (normalised `3×S×S` tensors): two passes, the first for the
/// maxima, the second for a histogram of |x| up to them.
pub fn calibrate(fp32_onnx: &[u8], input_size: u32, inputs: &[Vec<f32>]) -> Result<Calibration> {
    ensure!(!inputs.is_empty(), "no calibration images");
    let mut proto = pb::ModelProto::decode(fp32_onnx).context("decoding the fp32 export")?;
    let graph = proto.graph.as_mut().context("the export has no graph")?;
    let probes = conv_tensors(graph);
    let relu_follows: Vec<bool> = probes.iter().map(|n| only_relu_reads(graph, n)).collect();
    let first_probe = graph.output.len();
    for name in &probes {
        graph.output.push(pb::ValueInfoProto {
            name: name.clone(),
            ..Default::default()
        });
    }
    let s = input_size as usize;
    let plan = tract_onnx::onnx()
        .model_for_read(&mut Cursor::new(proto.encode_to_vec()))?
        .with_input_fact(0, f32::fact([1, 3, s, s]).into())?
        .into_optimized()?
        .into_runnable()?;
    // What the quantizer must represent: |x|, or x⁺ where a ReLU clips anyway.
    let magnitude = |k: usize, v: f32| if relu_follows[k] { v.max(0.0) } else { v.abs() };
    let each_probe = |f: &mut dyn FnMut(usize, &[f32])| -> Result<()> {
        for input in inputs {
            ensure!(
                input.len() == 3 * s * s,
                "calibration input has the wrong size"
            );
            let tensor = tract_ndarray::Array4::from_shape_vec((1, 3, s, s), input.clone())?;
            let outputs = plan.run(tvec!(tensor.into_tensor().into()))?;
            for (k, value) in outputs[first_probe..].iter().enumerate() {
                let view = value.to_plain_array_view::<f32>()?;
                f(k, view.as_slice().context("non-contiguous probe output")?);
            }
        }
        Ok(())
    };
    let mut max = vec![0f32; probes.len()];
    let mut min = vec![f32::INFINITY; probes.len()];
    each_probe(&mut |k, values| {
        for &v in values {
            max[k] = max[k].max(magnitude(k, v));
            min[k] = min[k].min(v);
        }
    })?;
    let mut histograms = vec![vec![0u64; HISTOGRAM_BINS]; probes.len()];
    each_probe(&mut |k, values| {
        let per_bin = max[k] / HISTOGRAM_BINS as f32;
        for &v in values {
            let bin = if per_bin > 0.0 {
                ((magnitude(k, v) / per_bin) as usize).min(HISTOGRAM_BINS - 1)
            } else {
                0
            };
            histograms[k][bin] += 1;
        }
    })?;
    Ok(probes
        .into_iter()
        .enumerate()
        .map(|(k, name)| {
            let range = TensorRange {
                percentile_abs: percentile(&histograms[k], max[k], CALIBRATION_PERCENTILE),
                max_abs: max[k],
                min: min[k],
                relu_follows: relu_follows[k],
            };
            (name, range)
        })
        .collect())
}

/// Upper edge of the bin where the cumulative count reaches `fraction`, for
/// a histogram of `bins` equal bins over [0, max].
fn percentile(histogram: &[u64], max: f32, fraction: f64) -> f32 {
    let total: u64 = histogram.iter().sum();
    let target = (fraction * total as f64).ceil() as u64;
    let mut seen = 0;
    for (i, &count) in histogram.iter().enumerate() {
        seen += count;
        if seen >= target {
            return max * (i + 1) as f32 / histogram.len() as f32;
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_channel_quantization_by_hand() {
        // Channel 0: max 2.54 → scale 0.02; channel 1: max 0.127 → 0.001.
        let w = [2.54, -1.0, 0.011, 0.127, -0.064, 0.0];
        let (q, s) = quantize_per_channel(&w, 2);
        assert!((s[0] - 0.02).abs() < 1e-7 && (s[1] - 0.001).abs() < 1e-9);
        assert_eq!(q, vec![127, -50, 1, 127, -64, 0]);
    }

    #[test]
    fn dead_tensors_get_a_finite_scale() {
        assert_eq!(scale_for(0.0, 127.0), 1.0);
        assert_eq!(scale_for(f32::NAN, 127.0), 1.0);
        assert_eq!(scale_for(12.7, 127.0), 0.1);
    }

    #[test]
    fn percentile_by_hand() {
        // 10 bins over [0, 10]: counts 5, 3, 0, 2 → 50 % at bin 0's top (1.0),
        // 80 % at bin 1's (2.0), 100 % at bin 3's (4.0).
        let h = [5, 3, 0, 2, 0, 0, 0, 0, 0, 0];
        assert_eq!(percentile(&h, 10.0, 0.5), 1.0);
        assert_eq!(percentile(&h, 10.0, 0.8), 2.0);
        assert_eq!(percentile(&h, 10.0, 0.81), 4.0);
        assert_eq!(percentile(&h, 10.0, 1.0), 4.0);
    }

    #[test]
    fn non_negative_tensors_use_uint8() {
        let r = |min: f32, relu_follows: bool| TensorRange {
            percentile_abs: 5.1,
            max_abs: 9.0,
            min,
            relu_follows,
        };
        assert_eq!(r(0.0, false).quantization(), (0.02, true));
        assert_eq!(r(-1.0, true).quantization(), (0.02, true));
        let (scale, unsigned) = r(-1.0, false).quantization();
        assert!(!unsigned && (scale - 5.1 / 127.0).abs() < 1e-9);
    }
}
