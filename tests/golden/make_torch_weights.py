"""Write the PyTorch golden files that tests/test_torch_weights.py loads without torch.

For each small PyTorch model: its state dict as ``torch_<name>.safetensors`` and, in
``torch_<name>.npz``, fixed inputs ``x`` and PyTorch's outputs ``y`` on them (eval mode).
Run it where torch is installed (``pip install 'nnc[bench]'``, torch 2.13.0)::

    python tests/golden/make_torch_weights.py

The files are committed: the test suite never needs torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

HERE = Path(__file__).resolve().parent


class Recurrent(nn.Module):
    """A recurrent module's outputs at every step, from a zero state (nnc's zero_state(unroll(...)))."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class Encoder(nn.Module):
    """Tokens -> embedding, self-attention with a residual connection, then LayerNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.embed(tokens)
        mixed, _ = self.attn(e, e, e, need_weights=False)
        return self.norm(e + mixed)


def trained_statistics(model: nn.Module, shape: tuple[int, ...]) -> None:
    """A few training-mode batches, so that the running statistics are not their initial 0 and 1."""
    model.train()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(shape, generator=gen) * 2 + 0.5)
    model.eval()


def models() -> dict[str, tuple[nn.Module, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3)
    )
    trained_statistics(cnn, (6, 2, 5, 5))
    return {
        "mlp": (nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)), torch.randn(5, 4, generator=gen)),
        "cnn": (cnn, torch.randn(2, 2, 5, 5, generator=gen)),
        "rnn": (Recurrent(nn.RNN(3, 4, batch_first=True)), torch.randn(2, 6, 3, generator=gen)),
        "lstm": (
            Recurrent(nn.LSTM(3, 5, num_layers=2, batch_first=True)),
            torch.randn(2, 6, 3, generator=gen),
        ),
        "gru": (Recurrent(nn.GRU(3, 5, batch_first=True)), torch.randn(2, 6, 3, generator=gen)),
        "encoder": (Encoder(), torch.randint(0, 11, (2, 7), generator=gen)),
    }


def main() -> None:
    torch.manual_seed(0)
    for name, (model, x) in models().items():
        model.eval()
        with torch.no_grad():
            # biases drawn like the weights: PyTorch's zero initial biases would hide a bias mix-up
            for key, tensor in model.state_dict().items():
                if key.endswith("bias") or "bias_" in key:
                    tensor.copy_(torch.randn(tensor.shape) * 0.3)
            y = model(x)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(HERE / f"torch_{name}.safetensors"))
        (HERE / f"torch_{name}.safetensors").chmod(0o644)  # save_file makes it private
        np.savez(HERE / f"torch_{name}.npz", x=x.numpy(), y=y.numpy(), order=np.array(list(state)))
        print(name, {k: tuple(v.shape) for k, v in state.items()})


if __name__ == "__main__":
    main()
