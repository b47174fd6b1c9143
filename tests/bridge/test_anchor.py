"""tfpyth's own example, f(a, b) = 3a + 4b² at (1, 3): value 39, gradients 3 and 24, in every
direction, eager and compiled on both sides."""

import pytest

from septet.bridge import (
    jax_from_tensorflow,
    jax_from_torch,
    tensorflow_from_jax,
    tensorflow_from_torch,
    torch_from_jax,
    torch_from_tensorflow,
)

from .helpers import (
    DIRECTION_IDS,
    DIRECTIONS,
    anchor,
    bridged,
    compiled,
    tensor,
    value_and_grads,
)

NAMED = {
    ("tensorflow", "torch"): torch_from_tensorflow,
    ("torch", "tensorflow"): tensorflow_from_torch,
    ("jax", "torch"): torch_from_jax,
    ("torch", "jax"): jax_from_torch,
    ("jax", "tensorflow"): tensorflow_from_jax,
    ("tensorflow", "jax"): jax_from_tensorflow,
}


@pytest.mark.parametrize(("source", "target"), DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("compile_both", [False, True], ids=["eager", "compiled"])
def test_anchor_gives_39_with_gradients_3_and_24(source, target, compile_both):
    # Given the anchor written for the source framework (compiled there: tf.function, jax.jit)
    fn = compiled(anchor, source) if compile_both else anchor
    # When it is called through the named function from the target framework (itself compiled)
    f = NAMED[(source, target)](fn)
    args = [tensor(target, 1.0), tensor(target, 3.0)]
    value, (grad_a, grad_b) = value_and_grads(target, f, args, compile_target=compile_both)
    # Then value and gradients are tfpyth's
    assert value == pytest.approx(39.0)
    assert float(grad_a) == pytest.approx(3.0)
    assert float(grad_b) == pytest.approx(24.0)


@pytest.mark.parametrize(("source", "target"), DIRECTIONS, ids=DIRECTION_IDS)
def test_wrap_is_the_named_function(source, target):
    f = bridged(anchor, source, target)
    value, grads = value_and_grads(target, f, [tensor(target, 1.0), tensor(target, 3.0)])
    assert value == pytest.approx(39.0)
    assert [float(g) for g in grads] == pytest.approx([3.0, 24.0])
