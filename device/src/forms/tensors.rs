//! Reading and writing ONNX tensor protos for the form rewrites: typed
//! values out of a `TensorProto` (f32 or int8, inline or raw), dimensions
//! checked against what a crafted model may carry, and f32 initializers.

use tract_onnx::pb;

use super::{tensor_error, FormError};

pub(super) const INT8: i32 = pb::tensor_proto::DataType::Int8 as i32;
pub(super) const FLOAT: i32 = pb::tensor_proto::DataType::Float as i32;

pub(super) fn floats(t: &pb::TensorProto) -> Result<Vec<f32>, FormError> {
    if t.data_type != FLOAT {
        return Err(tensor_error(&t.name, "expected f32"));
    }
    if !t.float_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    if !t.raw_data.len().is_multiple_of(4) {
        return Err(tensor_error(
            &t.name,
            "raw data is not a whole number of f32",
        ));
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

pub(super) fn int8s(t: &pb::TensorProto) -> Result<Vec<i8>, FormError> {
    if t.data_type != INT8 {
        return Err(tensor_error(&t.name, "expected int8"));
    }
    if !t.int32_data.is_empty() {
        return Ok(t.int32_data.iter().map(|&v| v as i8).collect());
    }
    Ok(t.raw_data.iter().map(|&b| b as i8).collect())
}

/// Dimensions as `usize`, refusing negative ones (a crafted model may carry
/// them) and element counts that overflow.
pub(super) fn checked_dims(t: &pb::TensorProto) -> Result<Vec<usize>, FormError> {
    let dims: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| tensor_error(&t.name, "negative dimension"))?;
    dims.iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| tensor_error(&t.name, "element count overflows"))?;
    Ok(dims)
}

pub(super) fn element_count(dims: &[usize]) -> usize {
    dims.iter().product()
}

pub(super) fn f32_initializer(name: &str, dims: &[i64], values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}
