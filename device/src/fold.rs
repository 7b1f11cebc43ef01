//! Work on constants done once at load instead of on every slice.
//!
//! tract folds a node whose inputs are all constant only while its output
//! stays within a 4 MiB allowance (`CONST_FOLD_MEM_BUDGET`, weighed so that
//! a large weight is not copied once per consumer). For our int8 bundles that
//! leaves per-slice work on the largest weights: in the int8 form the int32
//! copy of each layer-4 kernel and its sums (`sum_ker`, 1.4 ms each on x86),
//! in the as-shipped QDQ form the dequantization and packing of those
//! kernels. A device runs one model for thousands of slices, so it pays the
//! memory once instead: this pass folds every node whose inputs are all
//! constants, whatever the size, with the node's own evaluation (the same
//! code that would run per slice, so the numbers are the same bit for bit).

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::TypedModelPatch;
use tract_onnx::tract_core::ops::dummy::Dummy;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::source::TypedSource;
use tract_onnx::tract_core::optim::{Optimizer, OptimizerSession, TypedPass};

/// The pass: the first foldable node (from a cursor, as tract's own constant
/// propagation walks the graph) becomes a constant.
#[derive(Clone, Debug, Default)]
struct FoldConstantWork {
    cursor: usize,
}

impl TypedPass for FoldConstantWork {
    fn reset(&mut self) -> TractResult<()> {
        self.cursor = 0;
        Ok(())
    }

    fn next(
        &mut self,
        _session: &mut OptimizerSession,
        model: &TypedModel,
    ) -> TractResult<Option<TypedModelPatch>> {
        for node in model.nodes().iter().skip(self.cursor) {
            if node.inputs.is_empty()
                || node.op_is::<Const>()
                || node.op_is::<Dummy>()
                || node.op_is::<TypedSource>()
            {
                continue;
            }
            let facts = model.node_input_facts(node.id)?;
            let Some(inputs) = facts
                .iter()
                .map(|fact| fact.konst.clone().map(|t| t.into_tvalue()))
                .collect::<Option<TVec<TValue>>>()
            else {
                continue;
            };
            // Ops that need a plan's state say so by `None`; an op that
            // cannot evaluate here is left to run per slice as before.
            let Ok(Some(outputs)) = node.op.eval_out_of_plan(inputs) else {
                continue;
            };
            self.cursor = node.id;
            let mut patch = TypedModelPatch::default();
            for (slot, output) in outputs.into_iter().enumerate() {
                let exotic = model
                    .outlet_fact(OutletId::new(node.id, slot))?
                    .exotic_fact
                    .clone();
                let name = if slot == 0 {
                    format!("{}.folded", node.name)
                } else {
                    format!("{}.folded.{slot}", node.name)
                };
                let wire = patch.wire_node(
                    name,
                    Const::new_with_opt_exotic_fact(output.into_arc_tensor(), exotic)?,
                    &[],
                )?[0];
                patch.shunt_outside(model, OutletId::new(node.id, slot), wire)?;
            }
            return Ok(Some(patch));
        }
        Ok(None)
    }
}

/// Folds all constant work of an optimised model; returns how many nodes
/// became constants.
pub fn fold_constant_work(model: &mut TypedModel) -> TractResult<usize> {
    let optimizer = Optimizer {
        passes: vec![Box::new(FoldConstantWork::default())],
        steps: None,
    };
    let evaluated = |m: &TypedModel| {
        m.nodes()
            .iter()
            .filter(|n| !n.op_is::<Const>() && !n.op_is::<TypedSource>())
            .count()
    };
    let evaluated_before = evaluated(model);
    optimizer.session().optimize(model)?;
    Ok(evaluated_before.saturating_sub(evaluated(model)))
}
