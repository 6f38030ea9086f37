"""The Decision Transformer's network: a GPT-style causal transformer over interleaved
(return-to-go, state, action) tokens.

Reference: Chen, Lu, Rajeswaran, Lee, Grover, Laskin, Abbeel, Srinivas & Mordatch (2021),
"Decision Transformer: Reinforcement Learning via Sequence Modeling", NeurIPS,
arXiv:2106.01345 — Sec. 3 and Algorithm 1.

A segment of K steps becomes 3K tokens ``R̂_1, s_1, a_1, …, R̂_K, s_K, a_K``. Each modality
has its own embedding (a linear layer for returns-to-go and continuous actions, an embedding
table for discrete actions, a state encoder — linear for vectors, the Nature-DQN convolutions
for frames), to which a learned embedding of the step's timestep is added (the same for the
three tokens of a step; the paper's "episodic positional embedding"), then a LayerNorm. The
tokens pass through ``layers`` pre-LayerNorm transformer blocks (GPT-2's arrangement: GELU,
dropout, a final LayerNorm) with causal attention, so the output at ``s_t`` sees only
``R̂_{≤t}, s_{≤t}, a_{<t}`` and predicts ``a_t`` (tanh for continuous actions, logits for
discrete ones). Padding tokens (mask False) are not attended to by real tokens.

**Initialisation**: ``init_std=0.02`` initialises as the authors' code initialises each network,
with GPT-2's rule — the authors' copy of HuggingFace's ``GPT2PreTrainedModel._init_weights``
(``gym/decision_transformer/models/trajectory_gpt2.py``) and minGPT's ``GPT._init_weights``
(``atari/mingpt/model_atari.py``): linear weights (the attention's input projection included)
N(0, init_std²), their biases 0, LayerNorm weights 1 and biases 0, over the transformer blocks
and the final LayerNorm. Neither copy scales the residual output projections by
1/√(2·layers) (later GPT-2 code does); neither does this one. Where the rule reaches beyond
the blocks follows each script: for discrete actions (the Atari script, whose GPT module also
holds the output layer and which draws its action embedding table again from N(0, 0.02²))
the output layer and the action embedding get it too, and the timestep embedding starts at 0
(the Atari script's ``global_pos_emb``, a zero parameter); for continuous actions (the gym
script, whose embeddings and output layer lie outside its ``GPT2Model``) the timestep
embedding keeps PyTorch's N(0, 1) and the return, action and state embeddings and the output
layer PyTorch's defaults. The state encoder keeps PyTorch's defaults in both (in both
scripts). ``init_std=None``, this network's default, keeps PyTorch's defaults everywhere
(linear layers uniform in ±1/√fan-in, embeddings N(0, 1)) — and then every block starts as a
copy of the first (``nn.TransformerEncoder`` clones its layer). The configs choose:
``DiscreteDTConfig`` 0.02, as the authors' Atari code; ``ContinuousDTConfig`` None, a
deliberate difference from their gym code (its docstring says why).

Differences from the authors' code and CORL, deliberate: the transformer is PyTorch's
``TransformerEncoder`` (pre-norm, the same block as GPT-2, without GPT-2's own learned
positional embedding, which the authors' code also drops); padding is excluded with an
additive mask of −10⁹ (the authors' HuggingFace GPT-2 uses the dtype's minimum) and each token
may always attend to itself, so that a fully padded row stays finite; returns and states are
not predicted (the paper's optional heads, unused by its results and by CORL).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from tianshou_offline.algorithms.discrete.nets import AtariTrunk, is_image_space

__all__ = ["DecisionTransformerNet", "gpt2_init_", "state_encoder"]

_MASKED = -1e9


def state_encoder(observation_space: gym.Space[Any], hidden: int) -> nn.Module:
    """The state embedding of the paper: a linear layer for a flat observation, the
    Nature-DQN convolutions then a linear layer and tanh for frames ``(C, H, W)`` (the
    authors' Atari encoder).

    :raises TypeError: not a ``Box`` space.
    """
    if not isinstance(observation_space, gym.spaces.Box):
        raise TypeError(f"observation_space={observation_space}: expected a gymnasium Box")
    shape = tuple(int(s) for s in observation_space.shape)
    if is_image_space(observation_space):
        c, h, w = (1, *shape) if len(shape) == 2 else shape
        trunk = AtariTrunk(c, h, w, scale_obs=True)
        return nn.Sequential(trunk, nn.Linear(trunk.output_dim, hidden), nn.Tanh())
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(shape)), hidden))


def gpt2_init_(module: nn.Module, std: float) -> None:
    """GPT-2's initialisation of ``module`` and everything in it, in place: the weights of
    linear layers, embedding tables and attention input projections drawn from N(0, std²)
    (torch's global generator), their biases 0; LayerNorms weight 1, bias 0. Other layers
    are left as they are. See the module docstring for where the Decision Transformer
    applies it and the references."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.MultiheadAttention):  # its out_proj is an nn.Linear (above)
            if m.in_proj_weight is not None:
                nn.init.normal_(m.in_proj_weight, mean=0.0, std=std)
            else:  # separate key / value sizes
                for w in (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight):
                    nn.init.normal_(w, mean=0.0, std=std)
            if m.in_proj_bias is not None:
                nn.init.zeros_(m.in_proj_bias)
        elif isinstance(m, nn.LayerNorm):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class DecisionTransformerNet(nn.Module):
    """``(obs, act, rtg, timesteps, mask) -> action predictions``, each ``(B, K, …)``.

    :param state_encoder: ``(N, *obs_shape) -> (N, hidden)`` (:func:`state_encoder`).
    :param act_dim: A, the action size (continuous) or the number of actions (discrete).
    :param discrete: discrete actions (embedding table, logits) or continuous ones
        (linear embedding, tanh output in ``[−1, 1]``).
    :param hidden: the embedding width H.
    :param layers: transformer blocks (3 in the paper for MuJoCo, 6 for Atari).
    :param heads: attention heads (1 for MuJoCo, 8 for Atari); H must be a multiple.
    :param context: K, the longest segment (20 for MuJoCo, 30 for Atari).
    :param max_timestep: timesteps are embedded up to this value (larger ones are clamped to
        it − 1; 1000 for MuJoCo).
    :param dropout: dropout of the embeddings, attention and feed-forward layers (0.1).
    :param init_std: GPT-2's initialisation with this standard deviation where the authors'
        code applies it (see the module docstring; theirs: 0.02); None: PyTorch's defaults
        (the default here and in ``ContinuousDTConfig``; ``DiscreteDTConfig``: 0.02).
    """

    def __init__(
        self,
        *,
        state_encoder: nn.Module,
        act_dim: int,
        discrete: bool,
        hidden: int = 128,
        layers: int = 3,
        heads: int = 1,
        context: int = 20,
        max_timestep: int = 1000,
        dropout: float = 0.1,
        init_std: float | None = None,
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} is not a multiple of heads={heads}")
        for name, value in (("layers", layers), ("context", context), ("act_dim", act_dim)):
            if value < 1:
                raise ValueError(f"{name}={value}: expected >= 1")
        if max_timestep < 1:
            raise ValueError(f"max_timestep={max_timestep}: expected >= 1")
        if init_std is not None and not init_std > 0:
            raise ValueError(f"init_std={init_std}: expected > 0 or None")
        self.act_dim = int(act_dim)
        self.discrete = discrete
        self.hidden = int(hidden)
        self.heads = int(heads)
        self.context = int(context)
        self.max_timestep = int(max_timestep)
        self.init_std = None if init_std is None else float(init_std)
        self.embed_state = state_encoder
        self.embed_return = nn.Linear(1, hidden)
        self.embed_action: nn.Module = (
            nn.Embedding(act_dim, hidden) if discrete else nn.Linear(act_dim, hidden)
        )
        self.embed_timestep = nn.Embedding(max_timestep, hidden)
        self.embed_norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)
        block = nn.TransformerEncoderLayer(
            d_model=hidden,
            nhead=heads,
            dim_feedforward=4 * hidden,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.blocks = nn.TransformerEncoder(
            block, num_layers=layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False
        )
        self.predict_action = nn.Linear(hidden, act_dim)
        if init_std is not None:
            self._init_as_authors(init_std)

    def _init_as_authors(self, std: float) -> None:
        """GPT-2's initialisation where the authors' script for this action kind applies it
        (see the module docstring)."""
        gpt2_init_(self.blocks, std)
        if self.discrete:  # the Atari script (minGPT)
            gpt2_init_(self.predict_action, std)
            gpt2_init_(self.embed_action, std)
            nn.init.zeros_(self.embed_timestep.weight)

    @property
    def sizes(self) -> dict[str, Any]:
        """The constructor arguments that fix the parameter shapes (for checkpoints)."""
        return {
            "act_dim": self.act_dim,
            "discrete": self.discrete,
            "hidden": self.hidden,
            "layers": len(self.blocks.layers),
            "heads": self.heads,
            "context": self.context,
            "max_timestep": self.max_timestep,
        }

    def attention_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The additive attention mask ``(B · heads, 3K, 3K)`` of a step mask ``(B, K)``:
        causal, padding keys excluded, each token always sees itself."""
        k = mask.shape[1]
        tokens = mask.repeat_interleave(3, dim=1)  # (B, 3K)
        n = 3 * k
        causal = torch.ones(n, n, dtype=torch.bool, device=mask.device).tril()
        allowed = causal.unsqueeze(0) & tokens.unsqueeze(1)  # (B, 3K queries, 3K keys)
        ids = torch.arange(n, device=mask.device)
        allowed = allowed | (ids.unsqueeze(1) == ids.unsqueeze(0)).unsqueeze(0)  # the diagonal
        additive = torch.zeros(allowed.shape, device=mask.device)
        additive = additive.masked_fill(~allowed, _MASKED)
        return additive.repeat_interleave(self.heads, dim=0)

    def forward(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        rtg: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Predict the action of every step from the tokens before it.

        :param obs: ``(B, K, *obs_shape)``.
        :param act: ``(B, K, A)`` float or ``(B, K)`` int64 (the action at a step is not
            used to predict that step).
        :param rtg: ``(B, K)`` returns-to-go (scaled).
        :param timesteps: ``(B, K)`` int64.
        :param mask: ``(B, K)`` bool, True for real steps.
        :returns: ``(B, K, A)``: actions in ``[−1, 1]`` (continuous) or logits (discrete).
        """
        b, k = mask.shape
        if k > self.context:
            raise ValueError(f"a segment of {k} steps; this network's context is {self.context}")
        t_emb = self.embed_timestep(timesteps.clamp(0, self.max_timestep - 1))
        s_emb = self.embed_state(obs.reshape(b * k, *obs.shape[2:])).view(b, k, -1) + t_emb
        a_in = act if self.discrete else act.to(torch.float32)
        a_emb = self.embed_action(a_in) + t_emb
        r_emb = self.embed_return(rtg.unsqueeze(-1).to(torch.float32)) + t_emb
        tokens = torch.stack([r_emb, s_emb, a_emb], dim=2).reshape(b, 3 * k, self.hidden)
        h = self.drop(self.embed_norm(tokens))
        h = self.blocks(h, mask=self.attention_mask(mask))
        out: torch.Tensor = self.predict_action(h.view(b, k, 3, self.hidden)[:, :, 1])
        return out if self.discrete else torch.tanh(out)
