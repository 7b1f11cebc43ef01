//! Per-node profile of one model as loaded: each node of tract's optimised
//! plan timed over several runs through tract's own per-node evaluation hook
//! (`SimpleState::run_plan_with_eval`), with its op, its multiply-adds
//! (tract's cost model) and whether it works on constants only (work that
//! could be done once at load instead of on every slice).

use std::time::{Duration, Instant};

use serde::Serialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::{EvalContext, OpState};
use tract_onnx::tract_core::ops::Cost;
use tumorxai_shared::Preprocessed;

use crate::runtime::{Model, RuntimeError};

/// One node of the plan, over the profiled runs.
#[derive(Debug, Clone, Serialize)]
pub struct NodeProfile {
    pub id: usize,
    pub name: String,
    pub op: String,
    /// Median over the runs, milliseconds.
    pub median_ms: f64,
    /// Multiply-adds of one run by tract's cost model (0 where it has none).
    pub fma: i64,
    /// Every input is a constant of the model or derived from constants
    /// only: the same work on every slice.
    pub constant_inputs_only: bool,
}

/// The profile of a model: its nodes by time, and the sums.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub runs: usize,
    pub nodes: Vec<NodeProfile>,
    /// Sum of the nodes' medians, milliseconds.
    pub nodes_total_ms: f64,
    /// Median wall time of a whole run, milliseconds.
    pub run_median_ms: f64,
    /// Milliseconds per run spent in nodes with constant inputs only.
    pub constant_work_ms: f64,
    /// Nodes computed once at load instead (see the `fold` module).
    pub folded_at_load: usize,
}

fn median_ms(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples
        .get(samples.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Runs `input` through `model` `runs` times (after one warm-up) and times
/// every node. Nodes come sorted by median time, the slowest first.
pub fn profile(model: &Model, input: &Preprocessed, runs: usize) -> Result<Profile, RuntimeError> {
    let plan = model.plan();
    let graph = plan.model();
    let inference = |e: anyhow::Error| RuntimeError::Inference(format!("{e:#}"));
    let tensor = model.input_tensor(input)?;
    let mut state = plan.spawn().map_err(inference)?;
    let node_count = graph.nodes().len();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); node_count];
    let mut fma = vec![0i64; node_count];
    let mut whole = Vec::with_capacity(runs);
    let runs = runs.max(1);
    for run in 0..=runs {
        let timed = run > 0;
        let start = Instant::now();
        state
            .run_plan_with_eval(
                tvec!(tensor.clone().into()),
                |ctx: &EvalContext,
                 op_state: Option<&mut (dyn OpState + 'static)>,
                 node: &TypedNode,
                 inputs: TVec<TValue>|
                 -> TractResult<TVec<TValue>> {
                    let t = Instant::now();
                    let outputs = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                    if timed {
                        if let Some(slot) = times.get_mut(node.id) {
                            slot.push(t.elapsed());
                        }
                    }
                    outputs
                },
            )
            .map_err(inference)?;
        if timed {
            whole.push(start.elapsed());
        }
    }
    for node in graph.nodes() {
        let facts = graph.node_input_facts(node.id).map_err(inference)?;
        let cost = node.op.cost(&facts).unwrap_or_default();
        let fmas: i64 = cost
            .iter()
            .filter(|(kind, _)| matches!(kind, Cost::FMA(_)))
            .filter_map(|(_, n)| n.to_i64().ok())
            .sum();
        if let Some(slot) = fma.get_mut(node.id) {
            *slot = fmas;
        }
    }
    // Constant-derived: every input a constant or itself constant-derived
    // (in evaluation order), i.e. the same work on every slice.
    let mut constant_derived = vec![false; node_count];
    for id in graph.eval_order().map_err(inference)? {
        let Some(node) = graph.nodes().get(id) else {
            continue;
        };
        let derived = !node.inputs.is_empty()
            && node.inputs.iter().all(|outlet| {
                constant_derived.get(outlet.node).copied().unwrap_or(false)
                    || graph
                        .outlet_fact(*outlet)
                        .is_ok_and(|fact| fact.konst.is_some())
            });
        if let Some(slot) = constant_derived.get_mut(id) {
            *slot = derived;
        }
    }
    let mut nodes: Vec<NodeProfile> = graph
        .nodes()
        .iter()
        .filter_map(|node| {
            let samples = times.get_mut(node.id)?;
            if samples.is_empty() {
                // Constants are set once, not evaluated per run.
                return None;
            }
            Some(NodeProfile {
                id: node.id,
                name: node.name.clone(),
                op: node.op.name().to_string(),
                median_ms: median_ms(samples),
                fma: fma.get(node.id).copied().unwrap_or(0),
                constant_inputs_only: constant_derived.get(node.id).copied().unwrap_or(false),
            })
        })
        .collect();
    nodes.sort_by(|a, b| b.median_ms.total_cmp(&a.median_ms));
    // Folded from +0.0 (`Sum` of floats starts at −0.0).
    let nodes_total_ms = nodes.iter().fold(0.0, |sum, n| sum + n.median_ms);
    let constant_work_ms = nodes
        .iter()
        .filter(|n| n.constant_inputs_only)
        .fold(0.0, |sum, n| sum + n.median_ms);
    Ok(Profile {
        runs,
        nodes,
        nodes_total_ms,
        run_median_ms: median_ms(&mut whole),
        constant_work_ms,
        folded_at_load: model.folded_at_load(),
    })
}
