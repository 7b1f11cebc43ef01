//! Execution forms of an int8 bundle, chosen at load time. The bundle carries
//! int8 weights in ONNX QDQ form (small on the serial line); how to run them
//! depends on the CPU:
//!
//! - [`ExecutionForm::Dequantized`]: int8 weights turned back into f32
//!   initializers and activation Quantize/Dequantize pairs removed, so tract
//!   runs its f32 kernels (CPUs without worthwhile int8 kernels).
//! - [`ExecutionForm::Int8`]: every `Conv(DQ(Q(x)), DQ(W_int8), b)` becomes
//!   `ConvInteger(Q(x), W_int8)` (int32 accumulation) → Cast → × (x_scale ·
//!   w_scale[c]) → + b, so tract uses true int8 kernels (aarch64 picks its
//!   SDOT dot-product kernel where the CPU has it) and the output stays f32.
//!
//! Which one `auto` takes depends on the CPU's int8 kernels ([`Int8Kernels`]).
//! - [`ExecutionForm::AsShipped`]: the QDQ graph unchanged (reference
//!   semantics: f32 arithmetic on fake-quantized values).
//!
//! The rewrites work on the protobuf (`tract_onnx::pb`) before tract parses it.

use std::collections::{HashMap, HashSet};

use thiserror::Error;
use tract_onnx::pb;

mod cpu;
mod tensors;

pub use cpu::Int8Kernels;

use tensors::{checked_dims, element_count, f32_initializer, floats, int8s, FLOAT, INT8};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionForm {
    AsShipped,
    Dequantized,
    Int8,
}

impl ExecutionForm {
    /// The form for this CPU ([`Int8Kernels::auto_form`]).
    pub fn auto() -> ExecutionForm {
        Int8Kernels::detect().auto_form()
    }

    /// Why `auto` picks what it picks on this CPU, for the log.
    pub fn auto_reason() -> String {
        let cpu = Int8Kernels::detect();
        format!(
            "auto on this CPU: {}, {}",
            cpu.auto_form().name(),
            cpu.describe()
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            ExecutionForm::AsShipped => "as-shipped",
            ExecutionForm::Dequantized => "dequantized",
            ExecutionForm::Int8 => "int8",
        }
    }
}

impl std::str::FromStr for ExecutionForm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "as-shipped" => Ok(ExecutionForm::AsShipped),
            "dequantized" => Ok(ExecutionForm::Dequantized),
            "int8" => Ok(ExecutionForm::Int8),
            "auto" => Ok(ExecutionForm::auto()),
            _ => Err(format!(
                "unknown execution form {s:?} (auto, dequantized, int8, as-shipped)"
            )),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormError {
    #[error("the model has no graph")]
    NoGraph,
    #[error("quantized tensor {0}: {1}")]
    Tensor(String, String),
}

fn tensor_error(name: &str, why: impl Into<String>) -> FormError {
    FormError::Tensor(name.to_string(), why.into())
}

/// Rewrites `model` in place into `form`. A graph with no quantized ops is
/// left unchanged whatever the form.
pub fn apply(model: &mut pb::ModelProto, form: ExecutionForm) -> Result<(), FormError> {
    let graph = model.graph.as_mut().ok_or(FormError::NoGraph)?;
    match form {
        ExecutionForm::AsShipped => Ok(()),
        ExecutionForm::Dequantized => dequantize(graph),
        ExecutionForm::Int8 => to_conv_integer(graph),
    }
}

/// The `i`-th input or output name of a node: crafted models may have fewer.
fn nth<'n>(names: &'n [String], i: usize, node: &pb::NodeProto) -> Result<&'n str, FormError> {
    names.get(i).map(String::as_str).ok_or_else(|| {
        tensor_error(
            &node.name,
            format!("{} node has too few inputs or outputs", node.op_type),
        )
    })
}

/// Per-axis (or per-tensor) scale and zero point for `values` along `axis`.
fn dequantize_values(
    values: &[i8],
    dims: &[usize],
    scales: &[f32],
    zero_points: &[i8],
    axis: usize,
) -> Result<Vec<f32>, String> {
    if scales.len() != zero_points.len() || scales.is_empty() {
        return Err("scale and zero point lengths differ".to_string());
    }
    let inner: usize = dims.iter().skip(axis + 1).product();
    let axis_len = dims.get(axis).copied().unwrap_or(1);
    if scales.len() != 1 && scales.len() != axis_len {
        return Err(format!("{} scales for an axis of {axis_len}", scales.len()));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let c = if scales.len() == 1 {
                0
            } else {
                (i / inner.max(1)) % axis_len.max(1)
            };
            match (scales.get(c), zero_points.get(c)) {
                (Some(&scale), Some(&zero)) => Ok((f32::from(q) - f32::from(zero)) * scale),
                _ => Err("scale index out of range".to_string()),
            }
        })
        .collect()
}

fn axis_attr(node: &pb::NodeProto, rank: usize) -> usize {
    let axis = node
        .attribute
        .iter()
        .find(|a| a.name == "axis")
        .map(|a| a.i)
        .unwrap_or(1);
    let rank = i64::try_from(rank).unwrap_or(i64::MAX);
    let axis = if axis < 0 {
        axis.saturating_add(rank)
    } else {
        axis
    };
    // Out-of-range axes clamp; `dequantize_values` then rejects the scales.
    usize::try_from(axis.max(0)).unwrap_or(usize::MAX)
}

struct Index {
    initializers: HashMap<String, usize>,
    producers: HashMap<String, usize>,
    consumers: HashMap<String, Vec<usize>>,
}

impl Index {
    fn of(graph: &pb::GraphProto) -> Index {
        let mut producers = HashMap::new();
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for out in &node.output {
                producers.insert(out.clone(), i);
            }
            for input in &node.input {
                consumers.entry(input.clone()).or_default().push(i);
            }
        }
        Index {
            initializers: graph
                .initializer
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
            producers,
            consumers,
        }
    }

    fn producer<'g>(
        &self,
        graph: &'g pb::GraphProto,
        name: &str,
        op: &str,
    ) -> Option<(usize, &'g pb::NodeProto)> {
        let &i = self.producers.get(name)?;
        let node = graph.node.get(i)?;
        (node.op_type == op).then_some((i, node))
    }

    fn initializer<'g>(
        &self,
        graph: &'g pb::GraphProto,
        name: &str,
    ) -> Option<&'g pb::TensorProto> {
        self.initializers
            .get(name)
            .and_then(|&i| graph.initializer.get(i))
    }

    fn single_consumer(&self, name: &str) -> Option<usize> {
        match self.consumers.get(name).map(Vec::as_slice) {
            Some([only]) => Some(*only),
            _ => None,
        }
    }
}

/// A DequantizeLinear of a constant int8 tensor, as f32 values.
fn constant_dequantize(
    graph: &pb::GraphProto,
    index: &Index,
    node: &pb::NodeProto,
) -> Result<Option<Vec<f32>>, FormError> {
    let Some(q) = index.initializer(graph, nth(&node.input, 0, node)?) else {
        return Ok(None);
    };
    let scale = node
        .input
        .get(1)
        .and_then(|n| index.initializer(graph, n))
        .ok_or_else(|| tensor_error(&q.name, "scale is not a constant"))?;
    let scales = floats(scale)?;
    let zero_points = match node.input.get(2).and_then(|n| index.initializer(graph, n)) {
        Some(z) => int8s(z)?,
        None => vec![0; scales.len()],
    };
    let values = int8s(q)?;
    let dims = checked_dims(q)?;
    if values.len() != element_count(&dims) {
        return Err(tensor_error(&q.name, "data length does not match dims"));
    }
    let axis = axis_attr(node, dims.len());
    dequantize_values(&values, &dims, &scales, &zero_points, axis)
        .map(Some)
        .map_err(|why| tensor_error(&q.name, why))
}

/// Drops nodes by index and initializers nothing reads any more.
fn prune(graph: &mut pb::GraphProto, dead: &HashSet<usize>) {
    let mut i = 0;
    graph.node.retain(|_| {
        let keep = !dead.contains(&i);
        i += 1;
        keep
    });
    let used: HashSet<&String> = graph.node.iter().flat_map(|n| n.input.iter()).collect();
    let used: HashSet<String> = used.into_iter().cloned().collect();
    graph.initializer.retain(|t| used.contains(&t.name));
}

fn dequantize(graph: &mut pb::GraphProto) -> Result<(), FormError> {
    let index = Index::of(graph);
    let mut dead = HashSet::new();
    let mut new_initializers = Vec::new();
    let mut rename: HashMap<String, String> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        if node.op_type != "DequantizeLinear" {
            continue;
        }
        let (input, output) = (nth(&node.input, 0, node)?, nth(&node.output, 0, node)?);
        if let Some(values) = constant_dequantize(graph, &index, node)? {
            let dims = index
                .initializer(graph, input)
                .map(|t| t.dims.clone())
                .unwrap_or_default();
            new_initializers.push(f32_initializer(output, &dims, &values));
            dead.insert(i);
        } else if let Some((q, quantize)) = index.producer(graph, input, "QuantizeLinear") {
            // Activation fake-quantization: read the f32 value directly.
            rename.insert(
                output.to_string(),
                nth(&quantize.input, 0, quantize)?.to_string(),
            );
            dead.insert(i);
            dead.insert(q);
        }
    }
    // A QuantizeLinear may feed a DequantizeLinear that stays (not expected
    // from our exporter); keep it alive then.
    for (i, node) in graph.node.iter().enumerate() {
        if node.op_type == "QuantizeLinear" && dead.contains(&i) {
            let all_gone = node.output.iter().all(|out| {
                index
                    .consumers
                    .get(out)
                    .is_none_or(|users| users.iter().all(|u| dead.contains(u)))
            });
            if !all_gone {
                dead.remove(&i);
            }
        }
    }
    for node in graph.node.iter_mut() {
        for input in node.input.iter_mut() {
            if let Some(to) = rename.get(input) {
                *input = to.clone();
            }
        }
    }
    for output in graph.output.iter_mut() {
        if let Some(to) = rename.get(&output.name) {
            // A graph output must keep its name: re-expose it with Identity.
            let from = to.clone();
            graph.node.push(pb::NodeProto {
                op_type: "Identity".to_string(),
                name: format!("{}.identity", output.name),
                input: vec![from],
                output: vec![output.name.clone()],
                ..Default::default()
            });
        }
    }
    graph.initializer.extend(new_initializers);
    prune(graph, &dead);
    Ok(())
}

fn constant_floats(
    graph: &pb::GraphProto,
    index: &Index,
    name: &str,
    what: &str,
) -> Result<Vec<f32>, FormError> {
    index
        .initializer(graph, name)
        .map(floats)
        .transpose()?
        .ok_or_else(|| tensor_error(name, format!("{what} is not a constant")))
}

fn to_conv_integer(graph: &mut pb::GraphProto) -> Result<(), FormError> {
    let index = Index::of(graph);
    let mut dead = HashSet::new();
    // (position of the Conv, nodes replacing it)
    let mut replacements: Vec<(usize, Vec<pb::NodeProto>)> = Vec::new();
    let mut new_initializers = Vec::new();
    for (ci, conv) in graph.node.iter().enumerate() {
        if conv.op_type != "Conv" || conv.input.len() < 2 {
            continue;
        }
        let (conv_x, conv_w, conv_out) = (
            nth(&conv.input, 0, conv)?,
            nth(&conv.input, 1, conv)?,
            nth(&conv.output, 0, conv)?,
        );
        let Some((dx_i, dx)) = index.producer(graph, conv_x, "DequantizeLinear") else {
            continue;
        };
        let (dx_q, dx_out) = (nth(&dx.input, 0, dx)?, nth(&dx.output, 0, dx)?);
        if index.producer(graph, dx_q, "QuantizeLinear").is_none() {
            continue;
        }
        let Some((dw_i, dw)) = index.producer(graph, conv_w, "DequantizeLinear") else {
            continue;
        };
        let dw_q = nth(&dw.input, 0, dw)?;
        let Some(w) = index.initializer(graph, dw_q) else {
            continue;
        };
        if w.data_type != INT8 || dx.input.len() < 2 {
            continue;
        }
        let x_scale = constant_floats(graph, &index, nth(&dx.input, 1, dx)?, "activation scale")?;
        let w_scales = constant_floats(graph, &index, nth(&dw.input, 1, dw)?, "weight scale")?;
        let channels = checked_dims(w)?.first().copied().unwrap_or(0);
        let scale: Vec<f32> = match (x_scale.as_slice(), w_scales.as_slice()) {
            ([x], [w_all]) => vec![x * w_all; channels],
            ([x], per_channel) if per_channel.len() == channels => {
                per_channel.iter().map(|w_c| x * w_c).collect()
            }
            _ => {
                return Err(tensor_error(
                    &w.name,
                    "expected per-tensor x and per-channel w scales",
                ))
            }
        };
        let channels = i64::try_from(channels)
            .map_err(|_| tensor_error(&w.name, "too many output channels"))?;
        let name = &conv.name;
        let per_channel = [1, channels, 1, 1];
        let scale_name = format!("{name}.int8.scale");
        new_initializers.push(f32_initializer(&scale_name, &per_channel, &scale));
        let (acc, wide, scaled) = (
            format!("{name}.int8.acc"),
            format!("{name}.int8.f32"),
            format!("{name}.int8.scaled"),
        );
        let node = |op: &str, suffix: &str, inputs: Vec<String>, output: String| pb::NodeProto {
            op_type: op.to_string(),
            name: format!("{name}.{suffix}"),
            input: inputs,
            output: vec![output],
            ..Default::default()
        };
        // tract names a node's internals "<node>.<part>": no node name here
        // may be another's prefix followed by a dot.
        let mut conv_integer = node(
            "ConvInteger",
            "conv_integer",
            vec![dx_q.to_string(), dw_q.to_string()],
            acc.clone(),
        );
        conv_integer.attribute = conv.attribute.clone();
        let mut cast = node("Cast", "cast", vec![acc], wide.clone());
        cast.attribute.push(pb::AttributeProto {
            name: "to".to_string(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: i64::from(FLOAT),
            ..Default::default()
        });
        let mut nodes = vec![conv_integer, cast];
        if let Some(bias_name) = conv.input.get(2) {
            let bias = constant_floats(graph, &index, bias_name, "bias")?;
            let bias_4d = format!("{bias_name}.int8.bias");
            new_initializers.push(f32_initializer(&bias_4d, &per_channel, &bias));
            nodes.push(node(
                "Mul",
                "rescale",
                vec![wide, scale_name],
                scaled.clone(),
            ));
            nodes.push(node(
                "Add",
                "add_bias",
                vec![scaled, bias_4d],
                conv_out.to_string(),
            ));
        } else {
            nodes.push(node(
                "Mul",
                "rescale",
                vec![wide, scale_name],
                conv_out.to_string(),
            ));
        }
        replacements.push((ci, nodes));
        dead.insert(dw_i);
        if index.single_consumer(dx_out) == Some(ci) {
            dead.insert(dx_i);
        }
    }
    // Rebuild the node list in order, expanding each replaced Conv in place.
    let mut replaced: HashMap<usize, Vec<pb::NodeProto>> = replacements.into_iter().collect();
    let old = std::mem::take(&mut graph.node);
    let mut kept_dead = HashSet::new();
    for (i, node) in old.into_iter().enumerate() {
        if let Some(nodes) = replaced.remove(&i) {
            graph.node.extend(nodes);
        } else {
            if dead.contains(&i) {
                kept_dead.insert(graph.node.len());
            }
            graph.node.push(node);
        }
    }
    graph.initializer.extend(new_initializers);
    prune(graph, &kept_dead);
    Ok(())
}

#[cfg(test)]
mod tests;
