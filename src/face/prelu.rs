//! PReLU in one pass (issue 17 §2): a graph rewrite applied to embedder
//! graphs before tract optimises them.
//!
//! MobileFaceNet's TFLite graph (and so its ONNX conversion) spells each of
//! its 33 PReLU activations as five element-wise operators,
//! `Relu(x) + (x − |x|) · c` with a per-channel constant `c` (= α / 2). tract
//! runs them as three passes over the activation (`OptBinChain(Max+Add)`,
//! `Abs`, `OptBinChain(Sub+Mul)`): 29 % of the model's time in the profile
//! (`facegate bench embed --profile`). [`fuse`] finds that pattern on the
//! decluttered graph and replaces it with [`ChannelPRelu`], one in-place pass
//! (`x < 0 ? α·x : x`). The result is bit-identical: for x ≥ 0 both give x,
//! for x < 0 both give 2c·x (doubling is exact in floating point).
//!
//! Only f32 graphs are rewritten (the f16 path keeps tract's operators).
//! Measured (docs/PERFORMANCE.md, "MobileFaceNet's PReLU in one pass"): on
//! x86_64 MobileFaceNet ~19 → ~16 ms (AMD Zen 4); on aarch64 (qemu instruction
//! counts, cortex-a72 and -a76) 109.1 M → 101.4 M instructions per embedding.
//! The first version indexed the slope with a modulo per value (a division
//! each on aarch64) and counted 159.7 M there, so it was kept to x86_64 until
//! the loop below replaced it.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;

/// `y = x < 0 ? α[c]·x : x`, with `c` the index along `axis`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelPRelu {
    pub alpha: Vec<f32>,
    pub axis: usize,
}

impl Eq for ChannelPRelu {}

impl Op for ChannelPRelu {
    fn name(&self) -> StaticName {
        "FacegateChannelPRelu".into()
    }
    op_as_typed_op!();
}

impl EvalOp for ChannelPRelu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        ensure!(
            input.datum_type() == f32::datum_type(),
            "ChannelPRelu needs f32, got {:?}",
            input.datum_type()
        );
        let shape: TVec<usize> = input.shape().into();
        ensure!(
            self.axis < shape.len(),
            "ChannelPRelu axis {} of {shape:?}",
            self.axis
        );
        ensure!(
            shape[self.axis] == self.alpha.len(),
            "ChannelPRelu: {} slopes for shape {shape:?}",
            self.alpha.len()
        );
        let inner: usize = shape[self.axis + 1..].iter().product();
        let block = inner * self.alpha.len();
        let mut t = input.into_tensor();
        {
            let mut ram = t.try_as_plain_ram_mut()?;
            let data = ram.as_slice_mut::<f32>()?;
            if block > 0 {
                for outer in data.chunks_mut(block) {
                    apply_block(outer, &self.alpha, inner);
                }
            }
        }
        Ok(tvec!(t.into_tvalue()))
    }
}

/// One block of `alpha.len() × inner` values (all channels of one outer
/// index). Channel-last activations (`inner == 1`, MobileFaceNet's NHWC
/// graph) take one slope per lane; channel-first ones one slope per run.
/// Both are loops the compiler vectorises (a multiply, a compare and a blend
/// per lane); the first version indexed the slope with a modulo per value,
/// a division each on aarch64.
fn apply_block(block: &mut [f32], alpha: &[f32], inner: usize) {
    if inner == 1 {
        for (v, &a) in block.iter_mut().zip(alpha) {
            *v = prelu(*v, a);
        }
    } else {
        for (run, &a) in block.chunks_mut(inner).zip(alpha) {
            for v in run.iter_mut() {
                *v = prelu(*v, a);
            }
        }
    }
}

#[inline(always)]
fn prelu(v: f32, a: f32) -> f32 {
    let s = v * a;
    if v < 0.0 {
        s
    } else {
        v
    }
}

impl TypedOp for ChannelPRelu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1, "ChannelPRelu has one input");
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }
    as_op!();
}

fn bin_name(node: &TypedNode) -> Option<String> {
    node.op_as::<TypedBinOp>().map(|b| b.0.name().to_string())
}

fn konst(model: &TypedModel, o: OutletId) -> Option<Arc<Tensor>> {
    model.outlet_fact(o).ok()?.konst.clone()
}

/// The input of a two-input `node` that is not `known`.
fn other_input(node: &TypedNode, known: OutletId) -> Option<OutletId> {
    match node.inputs.as_slice() {
        [a, b] if *a == known => Some(*b),
        [a, b] if *b == known => Some(*a),
        _ => None,
    }
}

/// The only consumer of `o`, if it has exactly one.
fn single_successor(model: &TypedModel, o: OutletId) -> Option<usize> {
    let succ = &model.node(o.node).outputs.get(o.slot)?.successors;
    (succ.len() == 1).then(|| succ[0].node)
}

/// `c` as per-channel slopes along one axis of an activation of `shape`:
/// (axis, values), if `c` is a scalar or varies along one axis only.
fn per_channel(c: &Tensor, shape: &[usize]) -> Option<(usize, Vec<f32>)> {
    let c = c.cast_to::<f32>().ok()?;
    let vals: Vec<f32> = c.try_as_plain_ram().ok()?.as_slice::<f32>().ok()?.to_vec();
    let rank = shape.len();
    let cs = c.shape();
    if cs.len() > rank {
        return None;
    }
    // Right-aligned broadcasting: the axis of the activation where c is not 1.
    let offset = rank - cs.len();
    let varying: Vec<usize> = (0..cs.len()).filter(|&i| cs[i] != 1).collect();
    match varying.as_slice() {
        [] if rank >= 2 => Some((1, vec![*vals.first()?; shape[1]])),
        [i] if cs[*i] == shape[offset + i] => Some((offset + i, vals)),
        _ => None,
    }
}

/// Replace every `Relu(x) + (x − |x|)·c` in `model` by one [`ChannelPRelu`]
/// (α = 2c). Returns the rewritten model and how many were replaced.
pub fn fuse(mut model: TypedModel) -> TractResult<(TypedModel, usize)> {
    let mut count = 0;
    let order = model.eval_order()?;
    for abs_id in order {
        let node = model.node(abs_id);
        let is_abs = node
            .op_as::<ElementWiseOp>()
            .is_some_and(|e| e.0.name() == "Abs");
        if !is_abs || node.inputs.len() != 1 {
            continue;
        }
        let x = node.inputs[0];
        let fact = model.outlet_fact(x)?;
        if fact.datum_type != f32::datum_type() {
            continue;
        }
        let Some(shape) = fact.shape.as_concrete().map(|s| s.to_vec()) else {
            continue;
        };
        // x − |x|
        let Some(sub) = single_successor(&model, OutletId::new(abs_id, 0)) else {
            continue;
        };
        let sub_n = model.node(sub);
        if bin_name(sub_n).as_deref() != Some("Sub")
            || sub_n.inputs != [x, OutletId::new(abs_id, 0)]
        {
            continue;
        }
        // (x − |x|)·c
        let Some(mul) = single_successor(&model, OutletId::new(sub, 0)) else {
            continue;
        };
        let mul_n = model.node(mul);
        if bin_name(mul_n).as_deref() != Some("Mul") {
            continue;
        }
        let Some(c) = other_input(mul_n, OutletId::new(sub, 0)).and_then(|o| konst(&model, o))
        else {
            continue;
        };
        let Some((axis, half)) = per_channel(&c, &shape) else {
            continue;
        };
        // Relu(x) + …: the add's other input is max(x, 0).
        let Some(add) = single_successor(&model, OutletId::new(mul, 0)) else {
            continue;
        };
        let add_n = model.node(add);
        if bin_name(add_n).as_deref() != Some("Add") {
            continue;
        }
        let Some(relu_out) = other_input(add_n, OutletId::new(mul, 0)) else {
            continue;
        };
        let relu_n = model.node(relu_out.node);
        let is_relu = bin_name(relu_n).as_deref() == Some("Max")
            && relu_n.inputs.len() == 2
            && relu_n.inputs.contains(&x)
            && relu_n.inputs.iter().filter(|i| **i != x).all(|i| {
                konst(&model, *i).is_some_and(|k| {
                    k.cast_to::<f32>()
                        .ok()
                        .and_then(|k| {
                            k.try_as_plain_ram().ok().and_then(|r| {
                                r.as_slice::<f32>()
                                    .ok()
                                    .map(|s| s.iter().all(|v| *v == 0.0))
                            })
                        })
                        .unwrap_or(false)
                })
            });
        if !is_relu || relu_n.outputs[0].successors.len() != 1 {
            continue;
        }
        let alpha: Vec<f32> = half.iter().map(|h| 2.0 * h).collect();
        let name = format!("{}.prelu", add_n.name);
        let mut patch = TypedModelPatch::default();
        let tap = patch.tap_model(&model, x)?;
        let y = patch.wire_node(name, ChannelPRelu { alpha, axis }, &[tap])?;
        patch.shunt_outside(&model, OutletId::new(add, 0), y[0])?;
        patch.apply(&mut model)?;
        count += 1;
    }
    let model = model.into_decluttered()?;
    Ok((model, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::math;

    /// `max(x, floor) + (x − |x|)·c` (or `(|x| − x)·c` with `reversed`) on a
    /// [1, 3, 2, 2] input, as tract types it; floor 0 is the PReLU pattern.
    fn graph(c: [f32; 3], floor: f32, reversed: bool) -> TypedModel {
        graph_shaped(c, floor, reversed, &[1, 3, 2, 2], &[1, 3, 1, 1])
    }

    /// The same on an input of `shape`, with `c` shaped `c_shape`.
    fn graph_shaped(
        c: [f32; 3],
        floor: f32,
        reversed: bool,
        shape: &[usize],
        c_shape: &[usize],
    ) -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact(shape)).unwrap();
        let c = m
            .add_const("c", tensor1(&c).into_shape(c_shape).unwrap())
            .unwrap();
        let floor = m
            .add_const(
                "floor",
                tensor0(floor).into_shape(&vec![1; shape.len()]).unwrap(),
            )
            .unwrap();
        let relu = m.wire_node("relu", math::max(), &[x, floor]).unwrap()[0];
        let abs = m.wire_node("abs", math::abs(), &[x]).unwrap()[0];
        let ends = if reversed { [abs, x] } else { [x, abs] };
        let sub = m.wire_node("sub", math::sub(), &ends).unwrap()[0];
        let mul = m.wire_node("mul", math::mul(), &[sub, c]).unwrap()[0];
        let add = m.wire_node("add", math::add(), &[relu, mul]).unwrap()[0];
        m.select_output_outlets(&[add]).unwrap();
        m
    }

    fn pattern(c: [f32; 3]) -> TypedModel {
        graph(c, 0.0, false)
    }

    fn run(m: TypedModel, x: &Tensor) -> Vec<f32> {
        let out = m
            .into_runnable()
            .unwrap()
            .run(tvec!(x.clone().into_tvalue()))
            .unwrap();
        out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn the_pattern_becomes_one_exact_op() {
        let c = [0.125, 0.3, -0.05];
        let x = tensor1(&[
            1.5f32, -2.0, 0.0, -0.0, -1.0, 3.0, -7.25, 0.5, -3.3, 2.2, -0.1, 9.0,
        ])
        .into_shape(&[1, 3, 2, 2])
        .unwrap();
        let want = run(pattern(c), &x);
        let (fused, n) = fuse(pattern(c)).unwrap();
        assert_eq!(n, 1);
        let ops: Vec<String> = fused
            .nodes()
            .iter()
            .map(|n| n.op.name().to_string())
            .collect();
        assert!(ops.iter().any(|o| o == "FacegateChannelPRelu"), "{ops:?}");
        assert!(!ops.iter().any(|o| o == "Abs"), "{ops:?}");
        let got = run(fused, &x);
        // Bit for bit, channel by channel: α = 2c applied to the negatives.
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{got:?} vs {want:?}"
        );
        assert_eq!(got[1], -2.0 * 0.25);
        assert_eq!(got[4], -0.6);
    }

    #[test]
    fn every_layout_and_batch_is_exact() {
        // Channel-last (MobileFaceNet's NHWC graph: one slope per lane) and
        // channel-first, with a batch of two so that the block loop runs
        // more than once.
        let c = [0.125, -0.3, 0.05];
        for (shape, c_shape, axis) in [
            (&[2, 2, 2, 3][..], &[1, 1, 1, 3][..], 3),
            (&[2, 3, 2, 2], &[1, 3, 1, 1], 1),
            (&[2, 3, 4], &[1, 3, 1], 1),
            (&[1, 5, 3], &[1, 1, 3], 2),
        ] {
            let n: usize = shape.iter().product();
            let vals: Vec<f32> = (0..n).map(|i| (i as f32 - 11.5) * 0.75).collect();
            let x = tensor1(&vals).into_shape(shape).unwrap();
            let want = run(graph_shaped(c, 0.0, false, shape, c_shape), &x);
            let (fused, count) = fuse(graph_shaped(c, 0.0, false, shape, c_shape)).unwrap();
            assert_eq!(count, 1, "{shape:?}");
            let op = fused
                .nodes()
                .iter()
                .find_map(|n| n.op_as::<ChannelPRelu>())
                .unwrap();
            assert_eq!(op.axis, axis, "{shape:?}");
            let got = run(fused, &x);
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{shape:?}: {got:?} vs {want:?}"
            );
            // And against the definition, value by value.
            let inner: usize = shape[axis + 1..].iter().product();
            for (i, (&v, &g)) in vals.iter().zip(&got).enumerate() {
                let a = 2.0 * c[(i / inner) % 3];
                assert_eq!(g, if v < 0.0 { a * v } else { v }, "{shape:?} at {i}");
            }
        }
    }

    #[test]
    fn lookalikes_are_left_alone() {
        // Relu replaced by max(x, 1): not a PReLU.
        assert_eq!(fuse(graph([0.1, 0.2, 0.3], 1.0, false)).unwrap().1, 0);
        // (|x| − x)·c: the sign is the other way round.
        let m = graph([0.1, 0.2, 0.3], 0.0, true);
        assert_eq!(fuse(m).unwrap().1, 0);
    }
}
