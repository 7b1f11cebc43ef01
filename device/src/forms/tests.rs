//! Tests of the execution-form rewrites: hand-computed dequantization and
//! crafted graphs that must give errors, never panics.

use super::*;

#[test]
fn per_axis_dequantization_by_hand() {
    // dims [2, 3], axis 0: row 0 scale 0.5 zp 1, row 1 scale 2 zp 0.
    let v = dequantize_values(&[1, 3, -1, 4, 0, -2], &[2, 3], &[0.5, 2.0], &[1, 0], 0).unwrap();
    assert_eq!(v, vec![0.0, 1.0, -1.0, 8.0, 0.0, -4.0]);
    let per_tensor = dequantize_values(&[2, -2], &[2], &[0.25], &[0], 0).unwrap();
    assert_eq!(per_tensor, vec![0.5, -0.5]);
    assert!(dequantize_values(&[1, 2], &[2], &[1.0, 1.0, 1.0], &[0, 0, 0], 0).is_err());
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.to_string(),
        name: format!("{op}.crafted"),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn model(nodes: Vec<pb::NodeProto>, initializers: Vec<pb::TensorProto>) -> pb::ModelProto {
    pb::ModelProto {
        graph: Some(pb::GraphProto {
            node: nodes,
            initializer: initializers,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn int8_tensor(name: &str, dims: &[i64], len: usize) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.to_vec(),
        data_type: INT8,
        raw_data: vec![1; len],
        ..Default::default()
    }
}

#[test]
fn crafted_graphs_give_errors_not_panics() {
    let scale = f32_initializer("s", &[], &[0.5]);
    let cases: Vec<(&str, pb::ModelProto)> = vec![
        (
            "DequantizeLinear without inputs",
            model(vec![node("DequantizeLinear", &[], &["y"])], vec![]),
        ),
        (
            "DequantizeLinear without outputs",
            model(
                vec![node("DequantizeLinear", &["w", "s"], &[])],
                vec![int8_tensor("w", &[2], 2), scale.clone()],
            ),
        ),
        (
            "negative dimension",
            model(
                vec![node("DequantizeLinear", &["w", "s"], &["y"])],
                vec![int8_tensor("w", &[-3, 2], 6), scale.clone()],
            ),
        ),
        (
            "overflowing dimensions",
            model(
                vec![node("DequantizeLinear", &["w", "s"], &["y"])],
                vec![int8_tensor("w", &[i64::MAX, 4], 8), scale.clone()],
            ),
        ),
        (
            "Conv fed by a DequantizeLinear without inputs",
            model(
                vec![
                    node("DequantizeLinear", &[], &["x"]),
                    node("Conv", &["x", "w"], &["y"]),
                ],
                vec![],
            ),
        ),
        (
            "Conv without outputs",
            model(vec![node("Conv", &["x", "w"], &[])], vec![]),
        ),
    ];
    for (what, crafted) in cases {
        // The Int8 rewrite only looks at Conv nodes; the Dequantized one
        // only at DequantizeLinear nodes. Each must refuse what it reads.
        let has = |op: &str| {
            crafted
                .graph
                .iter()
                .flat_map(|g| &g.node)
                .any(|n| n.op_type == op)
        };
        let expectations = [
            (ExecutionForm::Dequantized, has("DequantizeLinear")),
            (ExecutionForm::Int8, has("Conv")),
        ];
        for (form, must_fail) in expectations {
            let result = apply(&mut crafted.clone(), form);
            assert_eq!(result.is_err(), must_fail, "{what}, {form:?}: {result:?}");
        }
    }
    let mut no_graph = pb::ModelProto::default();
    assert_eq!(
        apply(&mut no_graph, ExecutionForm::Int8),
        Err(FormError::NoGraph)
    );
}

#[test]
fn forms_parse_by_name() {
    assert_eq!("int8".parse(), Ok(ExecutionForm::Int8));
    assert_eq!("dequantized".parse(), Ok(ExecutionForm::Dequantized));
    assert_eq!("auto".parse(), Ok(ExecutionForm::auto()));
    assert!("fast".parse::<ExecutionForm>().is_err());
}

#[test]
fn auto_runs_int8_kernels_only_where_the_cpu_has_good_ones() {
    use ExecutionForm::{Dequantized, Int8};
    assert_eq!(Int8Kernels::ArmDotProduct.auto_form(), Int8); // Cortex-A76
    assert_eq!(Int8Kernels::ArmWithoutDotProduct.auto_form(), Dequantized); // Cortex-A72
    assert_eq!(Int8Kernels::X86Avx2.auto_form(), Int8);
    assert_eq!(Int8Kernels::Other.auto_form(), Dequantized);
    if cfg!(target_arch = "x86_64") {
        assert!(matches!(
            Int8Kernels::detect(),
            Int8Kernels::X86Avx2 | Int8Kernels::Other
        ));
    }
}
