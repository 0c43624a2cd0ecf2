# %% [markdown]
# # Drawing a model
#
# A multilayer perceptron for 8x8 digit images, with two identical residual blocks.
# `nnc render examples/mlp.py` draws `model` (shapes on edges, parameter counts, the
# repeated block drawn once with "× 2"); `nnc summary examples/mlp.py` lists its layers.

# %%
from nnc import Input, Linear, Vec, relu, residual, softmax


def block(width: int):
    """A residual block that keeps its input's type."""
    return residual(Linear(width, width) >> relu)


model = Input(Vec[64]) >> Linear(None, 32) >> relu >> block(32) >> block(32) >> Linear(32, 10) >> softmax

if __name__ == "__main__":
    from nnc.summary import summary

    print(model.signature)
    print(summary(model))
