//! ONNX export written in Rust: the trained ResNet as an ONNX graph built with
//! the protobuf types `tract-onnx` exposes (`tract_onnx::pb`) and encoded with
//! prost. BatchNorm is folded into the convolutions, the input is fixed at
//! `1×3×S×S`, and there are two outputs: `logits` `[1, K]` and `features`
//! (the last conv block's map, `[1, C, h, w]`, for EigenCAM).
//!
//! Opset 13 (default domain), IR version 7. Ops used: Conv, Relu, MaxPool,
//! Add, GlobalAveragePool, Flatten, Gemm; the int8 form ([`export_int8`])
//! adds DequantizeLinear for int8 weights and QuantizeLinear → DequantizeLinear
//! on every Conv input but the stem's (QDQ form, see [`super::quantize`]).

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use prost::Message;
use tch::{nn, Kind, Tensor};
use tract_onnx::pb;

use super::quantize::{quantize_per_channel, Calibration};
use crate::model::{Depth, ResNetConfig};

pub const OPSET: i64 = 13;
pub const IR_VERSION: i64 = 7;
pub const INPUT: &str = "input";
pub const LOGITS: &str = "logits";
pub const FEATURES: &str = "features";
/// tch's BatchNorm epsilon (as torchvision's).
const BN_EPS: f64 = 1e-5;

/// Weights by torchvision name, as f64 host vectors with their shapes.
struct Weights(HashMap<String, (Vec<i64>, Vec<f64>)>);

impl Weights {
    fn from_store(vs: &nn::VarStore) -> Result<Weights> {
        let mut map = HashMap::new();
        for (name, t) in vs.variables() {
            let t = t
                .to_device(tch::Device::Cpu)
                .to_kind(Kind::Double)
                .contiguous();
            let values = Vec::<f64>::try_from(t.flatten(0, -1))
                .with_context(|| format!("reading {name}"))?;
            map.insert(name, (t.size(), values));
        }
        Ok(Weights(map))
    }

    fn get(&self, name: &str) -> Result<&(Vec<i64>, Vec<f64>)> {
        self.0
            .get(name)
            .with_context(|| format!("the model has no tensor {name}"))
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn raw_tensor(
    name: &str,
    dims: &[i64],
    data_type: pb::tensor_proto::DataType,
    raw_data: Vec<u8>,
) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.to_vec(),
        data_type: data_type as i32,
        raw_data,
        ..Default::default()
    }
}

/// f32 tensor from f64 host values (the folded weights).
fn tensor_proto(name: &str, dims: &[i64], values: &[f64]) -> pb::TensorProto {
    let f32s: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    f32_tensor_proto(name, dims, &f32s)
}

fn f32_tensor_proto(name: &str, dims: &[i64], values: &[f32]) -> pb::TensorProto {
    let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    raw_tensor(name, dims, pb::tensor_proto::DataType::Float, raw)
}

fn int8_tensor_proto(name: &str, dims: &[i64], values: &[i8]) -> pb::TensorProto {
    let raw = values.iter().map(|&v| v as u8).collect();
    raw_tensor(name, dims, pb::tensor_proto::DataType::Int8, raw)
}

fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension, Dimension};
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Graph under construction.
struct Builder<'w> {
    weights: &'w Weights,
    /// Activation ranges; `Some` writes the int8 QDQ form.
    calibration: Option<&'w Calibration>,
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
}

impl Builder<'_> {
    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attributes: Vec<pb::AttributeProto>,
    ) -> String {
        self.nodes.push(pb::NodeProto {
            op_type: op.to_string(),
            name: name.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute: attributes,
            ..Default::default()
        });
        output.to_string()
    }

    /// Conv `conv` followed by BatchNorm `bn`, folded into one Conv:
    /// W' = W·γ/√(σ²+ε), b' = β − μ·γ/√(σ²+ε).
    fn conv_bn(
        &mut self,
        input: &str,
        conv: &str,
        bn: &str,
        stride: i64,
        padding: i64,
    ) -> Result<String> {
        let (shape, w) = self.weights.get(&format!("{conv}.weight"))?;
        let (_, gamma) = self.weights.get(&format!("{bn}.weight"))?;
        let (_, beta) = self.weights.get(&format!("{bn}.bias"))?;
        let (_, mean) = self.weights.get(&format!("{bn}.running_mean"))?;
        let (_, var) = self.weights.get(&format!("{bn}.running_var"))?;
        let out_channels = shape[0] as usize;
        let per_channel = w.len() / out_channels;
        let scale: Vec<f64> = (0..out_channels)
            .map(|c| gamma[c] / (var[c] + BN_EPS).sqrt())
            .collect();
        let folded: Vec<f64> = w
            .iter()
            .enumerate()
            .map(|(i, v)| v * scale[i / per_channel])
            .collect();
        let bias: Vec<f64> = (0..out_channels)
            .map(|c| beta[c] - mean[c] * scale[c])
            .collect();
        let (w_name, b_name) = (format!("{conv}.weight"), format!("{conv}.bias"));
        self.initializers
            .push(tensor_proto(&b_name, &[out_channels as i64], &bias));
        let k = shape[2];
        let attributes = vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("strides", &[stride, stride]),
            attr_ints("pads", &[padding; 4]),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", 1),
        ];
        let output = format!("{conv}.out");
        let Some(calibration) = self.calibration else {
            self.initializers
                .push(tensor_proto(&w_name, shape, &folded));
            return Ok(self.node(
                "Conv",
                conv,
                &[input, &w_name, &b_name],
                &output,
                attributes,
            ));
        };
        let range = |name: &str| {
            calibration
                .get(name)
                .copied()
                .with_context(|| format!("no calibration range for {name}"))
        };
        let (q, scales) = quantize_per_channel(&folded, out_channels);
        let q_name = format!("{w_name}.int8");
        self.initializers
            .push(int8_tensor_proto(&q_name, shape, &q));
        let (ws, wz) = (format!("{w_name}.scale"), format!("{w_name}.zero_point"));
        let channels = [out_channels as i64];
        self.initializers
            .push(f32_tensor_proto(&ws, &channels, &scales));
        self.initializers
            .push(int8_tensor_proto(&wz, &channels, &vec![0; out_channels]));
        self.node(
            "DequantizeLinear",
            &format!("{w_name}.dequantize"),
            &[&q_name, &ws, &wz],
            &w_name,
            vec![attr_int("axis", 0)],
        );
        if input == INPUT {
            // The stem sees the normalised image: its activations stay f32
            // (weights-only int8), the usual exception for the first layer.
            return Ok(self.node(
                "Conv",
                conv,
                &[input, &w_name, &b_name],
                &output,
                attributes,
            ));
        }
        let x = self.fake_quantize(input, &format!("{conv}.x"), range(input)?.quantization());
        Ok(self.node("Conv", conv, &[&x, &w_name, &b_name], &output, attributes))
    }

    /// QuantizeLinear of `input` with a per-tensor scale named
    /// `{prefix}.scale` and a zero point 0 of type uint8 (`unsigned`) or int8.
    fn quantize(&mut self, input: &str, prefix: &str, (scale, unsigned): (f32, bool)) -> String {
        let (s, z) = (format!("{prefix}.scale"), format!("{prefix}.zero_point"));
        self.initializers.push(f32_tensor_proto(&s, &[], &[scale]));
        let mut zero_point = int8_tensor_proto(&z, &[], &[0]);
        if unsigned {
            zero_point.data_type = pb::tensor_proto::DataType::Uint8 as i32;
        }
        self.initializers.push(zero_point);
        self.node(
            "QuantizeLinear",
            &format!("{prefix}.quantize"),
            &[input, &s, &z],
            &format!("{prefix}.int8"),
            vec![],
        )
    }

    /// QuantizeLinear → DequantizeLinear: the f32 value an int8 kernel sees.
    fn fake_quantize(&mut self, input: &str, prefix: &str, quantization: (f32, bool)) -> String {
        let q = self.quantize(input, prefix, quantization);
        let (s, z) = (format!("{prefix}.scale"), format!("{prefix}.zero_point"));
        self.node(
            "DequantizeLinear",
            &format!("{prefix}.dequantize"),
            &[&q, &s, &z],
            prefix,
            vec![],
        )
    }

    fn relu(&mut self, input: &str, name: &str) -> String {
        self.node("Relu", name, &[input], &format!("{name}.out"), vec![])
    }
}

/// Spatial side after the stem and each stage (as the convolutions compute it).
fn feature_side(input: i64) -> i64 {
    let down = |s: i64, k: i64, stride: i64, pad: i64| (s + 2 * pad - k) / stride + 1;
    let mut s = down(input, 7, 2, 3);
    s = down(s, 3, 2, 1);
    for _ in 0..3 {
        s = down(s, 3, 2, 1);
    }
    s
}

/// The ONNX metadata every export carries: class names in index order and
/// the preprocessing spec with its hash.
pub fn metadata(
    classes: &[String],
    spec: &tumorxai_shared::PreprocessSpec,
) -> Result<Vec<(String, String)>> {
    Ok(vec![
        ("classes".to_string(), serde_json::to_string(classes)?),
        ("preprocess_spec".to_string(), spec.canonical_json()),
        ("preprocess_spec_sha256".to_string(), spec.hash_hex()),
    ])
}

/// Encodes the model in `vs` (built by `model::resnet` with a head of
/// `classes`) as fp32 ONNX bytes for a fixed `1×3×S×S` input.
pub fn export(
    vs: &nn::VarStore,
    config: ResNetConfig,
    input_size: u32,
    classes: usize,
    metadata: &[(String, String)],
) -> Result<Vec<u8>> {
    build(vs, config, input_size, classes, metadata, None)
}

/// The int8 QDQ form of [`export`], with activation scales from `calibration`
/// (measured on the fp32 export by [`super::quantize::calibrate`]).
pub fn export_int8(
    vs: &nn::VarStore,
    config: ResNetConfig,
    input_size: u32,
    classes: usize,
    metadata: &[(String, String)],
    calibration: &Calibration,
) -> Result<Vec<u8>> {
    build(vs, config, input_size, classes, metadata, Some(calibration))
}

fn build(
    vs: &nn::VarStore,
    config: ResNetConfig,
    input_size: u32,
    classes: usize,
    metadata: &[(String, String)],
    calibration: Option<&Calibration>,
) -> Result<Vec<u8>> {
    let weights = Weights::from_store(vs)?;
    let mut b = Builder {
        weights: &weights,
        calibration,
        nodes: Vec::new(),
        initializers: Vec::new(),
    };
    let mut x = b.conv_bn(INPUT, "conv1", "bn1", 2, 3)?;
    x = b.relu(&x, "relu");
    x = b.node(
        "MaxPool",
        "maxpool",
        &[&x],
        "maxpool.out",
        vec![
            attr_ints("kernel_shape", &[3, 3]),
            attr_ints("strides", &[2, 2]),
            attr_ints("pads", &[1, 1, 1, 1]),
        ],
    );
    let blocks = match config.depth {
        Depth::ResNet18 => [2, 2, 2, 2],
        Depth::ResNet34 | Depth::ResNet50 => [3, 4, 6, 3],
    };
    let bottleneck = config.depth == Depth::ResNet50;
    for (stage, &count) in blocks.iter().enumerate() {
        for i in 0..count {
            let p = format!("layer{}.{i}", stage + 1);
            let stride = if i == 0 && stage > 0 { 2 } else { 1 };
            let mut y = if bottleneck {
                let a = b.conv_bn(&x, &format!("{p}.conv1"), &format!("{p}.bn1"), 1, 0)?;
                let a = b.relu(&a, &format!("{p}.relu1"));
                let a = b.conv_bn(&a, &format!("{p}.conv2"), &format!("{p}.bn2"), stride, 1)?;
                let a = b.relu(&a, &format!("{p}.relu2"));
                b.conv_bn(&a, &format!("{p}.conv3"), &format!("{p}.bn3"), 1, 0)?
            } else {
                let a = b.conv_bn(&x, &format!("{p}.conv1"), &format!("{p}.bn1"), stride, 1)?;
                let a = b.relu(&a, &format!("{p}.relu1"));
                b.conv_bn(&a, &format!("{p}.conv2"), &format!("{p}.bn2"), 1, 1)?
            };
            let shortcut = if weights.0.contains_key(&format!("{p}.downsample.0.weight")) {
                b.conv_bn(
                    &x,
                    &format!("{p}.downsample.0"),
                    &format!("{p}.downsample.1"),
                    stride,
                    0,
                )?
            } else {
                x.clone()
            };
            y = b.node(
                "Add",
                &format!("{p}.add"),
                &[&y, &shortcut],
                &format!("{p}.add.out"),
                vec![],
            );
            let last = stage == 3 && i == count - 1;
            x = if last {
                b.node("Relu", &format!("{p}.relu"), &[&y], FEATURES, vec![])
            } else {
                b.relu(&y, &format!("{p}.relu"))
            };
        }
    }
    let pooled = b.node(
        "GlobalAveragePool",
        "avgpool",
        &[FEATURES],
        "avgpool.out",
        vec![],
    );
    let flat = b.node(
        "Flatten",
        "flatten",
        &[&pooled],
        "flatten.out",
        vec![attr_int("axis", 1)],
    );
    let (fc_shape, fc_w) = weights.get("fc.weight")?;
    let (_, fc_b) = weights.get("fc.bias")?;
    if fc_shape[0] as usize != classes {
        bail!(
            "the head has {} outputs, the class list {classes}",
            fc_shape[0]
        );
    }
    b.initializers
        .push(tensor_proto("fc.weight", fc_shape, fc_w));
    b.initializers
        .push(tensor_proto("fc.bias", &[fc_shape[0]], fc_b));
    b.node(
        "Gemm",
        "fc",
        &[&flat, "fc.weight", "fc.bias"],
        LOGITS,
        vec![attr_int("transB", 1)],
    );

    let side = feature_side(i64::from(input_size));
    let s = i64::from(input_size);
    let graph = pb::GraphProto {
        name: "tumorxai".to_string(),
        node: b.nodes,
        initializer: b.initializers,
        input: vec![value_info(INPUT, &[1, 3, s, s])],
        output: vec![
            value_info(LOGITS, &[1, classes as i64]),
            value_info(FEATURES, &[1, config.embedding_dim(), side, side]),
        ],
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "tumorxai".to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        graph: Some(graph),
        metadata_props: metadata
            .iter()
            .map(|(k, v)| pb::StringStringEntryProto {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}

/// Eval-mode outputs of the tch model for comparison: (logits, features).
pub fn reference_outputs(model: &crate::model::ResNet, input: &Tensor) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let features = model.features(input, false);
        let logits = model.head(&crate::model::ResNet::pool(&features));
        (logits, features)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_side_follows_the_strides() {
        assert_eq!(feature_side(224), 7);
        assert_eq!(feature_side(64), 2);
        assert_eq!(feature_side(48), 2);
        assert_eq!(feature_side(32), 1);
    }
}
