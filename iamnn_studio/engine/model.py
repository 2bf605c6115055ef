"""IamNN: a ResNet whose blocks are one weight-shared module applied iteratively.

Leroux et al., "IamNN: Iterative and Adaptive Mobile Neural Network for Efficient Image
Classification" (ICLR 2018 workshop), section 2. Each of the four blocks keeps a state
s_0 = 0; iteration n concatenates the block input x0 with s_{n-1}, runs the shared
1x1-3x3-1x1 bottleneck (batchnorm statistics per iteration) and adds the result to the
state. A halting head scores every iteration; a sample leaves the block when its
cumulative halting score reaches the threshold, or at the baseline ResNet's unit count.

Halted samples cost nothing: after every iteration only the still-running samples are
gathered and go on (``compact=True``). ``compact=False`` runs every sample through every
iteration and applies the halting as masks: identical answers, a fixed graph (used for export
and as the reference in tests).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .halting import act_step, hazard_step
from .layers import BLOCKS, HaltingHead, conv_macs, per_iteration_norms


@dataclass
class ModelOutput:
    """What a forward pass returns, per image."""

    logits: Tensor  # [B, classes]
    iterations: Tensor  # [B, 4] int64, iterations used per block
    halting: list[Tensor]  # per block [B, cap]: halting score of each iteration run, NaN elsewhere
    ponder_cost: Tensor  # [B]: sum over blocks of N + R (ACT) or N
    macs: Tensor  # [B] int64: multiply-accumulates this image cost
    extras: dict = field(default_factory=dict)


@dataclass
class BlockResult:
    output: Tensor
    iterations: Tensor  # [B] int64
    halting: Tensor  # [B, cap]
    ponder_cost: Tensor  # [B]
    head_evaluations: Tensor  # [B] int64


class PooledFeatures:
    """The halting head's input, kept up to date cheaply: GAP(x0) once per block, and
    GAP(state) as the running sum of GAP(output) (the state is the sum of the outputs)."""

    def __init__(self, x0: Tensor, channels: int) -> None:
        self.x0 = x0.mean(dim=(2, 3))
        self.state = self.x0.new_zeros(x0.shape[0], channels)

    def update(self, output: Tensor) -> Tensor:
        """Add one iteration's output; returns concat(GAP(state), GAP(x0), GAP(output))."""
        out = output.mean(dim=(2, 3))
        self.state = self.state + out
        return torch.cat([self.state, self.x0, out], dim=1)

    def keep(self, keep: Tensor) -> None:
        self.x0, self.state = self.x0[keep], self.state[keep]


class IamNNBlock(nn.Module):
    """One IamNN block: shared processing module + state buffer + halting head."""

    def __init__(self, in_channels: int, channels: int, width: int, iterations: int, block: str = "bottleneck") -> None:
        super().__init__()
        self.in_channels, self.channels, self.cap = in_channels, channels, iterations
        self.process = BLOCKS.get(block)(in_channels, channels, width, iterations)
        self.halting_head = HaltingHead(channels + in_channels + channels, iterations)
        # One output batchnorm per exit iteration: the next block then sees the same input
        # distribution whichever iteration a sample left at (without it an anytime backbone fails).
        self.exit_norm = per_iteration_norms(channels, iterations)

    # ------------------------------------------------------------------ costs
    def input_macs(self, height: int, width: int) -> int:
        """MACs spent once per image on the block input (the x0 part of the first convolution)."""
        prepare_macs = getattr(self.process, "prepare_macs", None)
        return prepare_macs(height, width) if prepare_macs else 0

    def iteration_macs(self, height: int, width: int) -> int:
        return self.process.macs(height, width)

    def head_macs(self) -> int:
        return self.halting_head.macs()

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        x0: Tensor,
        *,
        rule: str,
        threshold: float,
        exit_at: int | None = None,
        compact: bool = True,
    ) -> BlockResult:
        """Run the block.

        Args:
            rule: "act" (Graves ACT), "hazard" (calibrated halting) or "fixed".
            exit_at: for ``rule="fixed"``, the iteration count (capped at the block's cap).
            compact: gather the running samples after each iteration (True) or mask (False).
        """
        if rule == "fixed":
            return self._run_fixed(x0, min(int(exit_at), self.cap))
        if compact:
            return self._run_compacted(x0, rule, threshold)
        return self._run_masked(x0, rule, threshold)

    def prepare(self, x0: Tensor) -> Tensor:
        """What every iteration needs from x0. Processing blocks with ``prepare``/``step``
        compute the x0 part of their first (linear) convolution once per block instead of
        convolving concat(x0, state) at every iteration; others get x0 itself."""
        return self.process.prepare(x0) if hasattr(self.process, "step") else x0

    def _step(self, prepared: Tensor, state: Tensor, n: int) -> tuple[Tensor, Tensor]:
        if hasattr(self.process, "step"):
            out = self.process.step(prepared, state, n)
        else:
            out = self.process(torch.cat([prepared, state], dim=1), n)
        return state + out, out

    def _run_fixed(self, x0: Tensor, n_iter: int) -> BlockResult:
        batch = x0.shape[0]
        state = x0.new_zeros(batch, self.channels, *x0.shape[2:])
        prepared = self.prepare(x0)
        for n in range(n_iter):
            state, _ = self._step(prepared, state, n)
        iterations = torch.full((batch,), n_iter, dtype=torch.long, device=x0.device)
        return BlockResult(
            output=self.exit_norm[n_iter - 1](state),
            iterations=iterations,
            halting=x0.new_full((batch, self.cap), math.nan, dtype=torch.float32),
            ponder_cost=iterations.float(),
            head_evaluations=torch.zeros_like(iterations),
        )

    def _run_compacted(self, x0: Tensor, rule: str, threshold: float) -> BlockResult:
        batch, device = x0.shape[0], x0.device
        running = torch.arange(batch, device=device)  # global index of each running sample
        x = self.prepare(x0)
        state = x0.new_zeros(batch, self.channels, *x0.shape[2:])
        cumulative = torch.zeros(batch, device=device)
        weighted = torch.zeros_like(state) if rule == "act" else None
        halting = torch.full((batch, self.cap), math.nan, device=device)
        iterations = torch.zeros(batch, dtype=torch.long, device=device)
        pooled = PooledFeatures(x0, self.channels)
        done_index, done_output, done_ponder = [], [], []

        for n in range(self.cap):
            state, out = self._step(x, state, n)
            score = None if n == self.cap - 1 else self.halting_head.score(pooled.update(out), n)
            if score is not None:
                halting[running, n] = score.detach().float()
            if rule == "act":
                halt, weight, new_cumulative = act_step(cumulative, score, threshold)
                weighted = weighted + weight.view(-1, 1, 1, 1).to(state.dtype) * self.exit_norm[n](state)
                block_out = weighted
                sample_ponder = (n + 1) + (1.0 - cumulative)  # N + R for those halting now
            else:
                halt, new_cumulative = hazard_step(cumulative, score, threshold)
                block_out = None
                sample_ponder = torch.full_like(cumulative, n + 1.0)
            cumulative = new_cumulative

            halting_now = int(halt.sum())  # one host sync per iteration
            if halting_now:
                iterations[running[halt]] = n + 1
                done_index.append(running[halt])
                done_ponder.append(sample_ponder[halt])
                done_output.append(block_out[halt] if rule == "act" else self.exit_norm[n](state[halt]))
            if halting_now == len(running):
                break
            if halting_now:
                keep = ~halt
                running, x, state, cumulative = running[keep], x[keep], state[keep], cumulative[keep]
                pooled.keep(keep)
                if weighted is not None:
                    weighted = weighted[keep]

        order = torch.argsort(torch.cat(done_index))
        ponder_cost = torch.cat(done_ponder)[order]
        return BlockResult(
            output=torch.cat(done_output)[order],
            iterations=iterations,
            halting=halting,
            ponder_cost=ponder_cost,
            head_evaluations=iterations.clamp(max=self.cap - 1),
        )

    def _run_masked(self, x0: Tensor, rule: str, threshold: float) -> BlockResult:
        """Every sample runs every iteration; halted samples' state, output and scores are frozen."""
        batch, device = x0.shape[0], x0.device
        state = x0.new_zeros(batch, self.channels, *x0.shape[2:])
        output = torch.zeros_like(state)
        cumulative = torch.zeros(batch, device=device)
        running = torch.ones(batch, dtype=torch.bool, device=device)
        iterations = torch.zeros(batch, dtype=torch.long, device=device)
        ponder = torch.zeros(batch, device=device)
        pooled = PooledFeatures(x0, self.channels)
        prepared = self.prepare(x0)
        scores = []
        for n in range(self.cap):
            new_state, out = self._step(prepared, state, n)
            state = torch.where(running.view(-1, 1, 1, 1), new_state, state)
            features = pooled.update(out)  # halted samples' scores are masked out below
            score = None if n == self.cap - 1 else self.halting_head.score(features, n)
            nan = torch.full((batch,), math.nan, device=device)
            scores.append(nan if score is None else torch.where(running, score.float(), nan))
            iterations = iterations + running.long()
            if rule == "act":
                halt, weight, new_cumulative = act_step(cumulative, score, threshold)
                weight = torch.where(running, weight, torch.zeros_like(weight))
                output = output + weight.view(-1, 1, 1, 1).to(state.dtype) * self.exit_norm[n](state)
                ponder = torch.where(running & halt, (n + 1) + (1.0 - cumulative), ponder)
            else:
                halt, new_cumulative = hazard_step(cumulative, score, threshold)
                exits_now = (running & halt).view(-1, 1, 1, 1)
                output = torch.where(exits_now, self.exit_norm[n](state), output)
                ponder = torch.where(running & halt, torch.full_like(ponder, n + 1.0), ponder)
            cumulative = torch.where(running, new_cumulative, cumulative)
            running = running & ~halt
        return BlockResult(
            output=output,
            iterations=iterations,
            halting=torch.stack(scores, dim=1),
            ponder_cost=ponder,
            head_evaluations=iterations.clamp(max=self.cap - 1),
        )


class IamNN(nn.Module):
    """Stem -> four IamNN blocks with max-pooling between them -> global pool -> classifier."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        caps, w, r = config.caps, config.width, config.bottleneck_ratio
        if config.small_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(config.in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(config.in_channels, w, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        blocks, in_channels = [], w
        for b, cap in enumerate(caps):
            width = w * 2**b
            blocks.append(IamNNBlock(in_channels, width * r, width, cap, config.block))
            in_channels = width * r
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(in_channels, config.num_classes)
        self._spatial = self._block_resolutions()

    # ------------------------------------------------------------------ knobs
    @property
    def caps(self) -> tuple[int, ...]:
        return tuple(block.cap for block in self.blocks)

    def set_threshold(self, threshold: float | None) -> None:
        """Move the compute-vs-accuracy knob on a trained model (None = 1 - eps)."""
        self.config.threshold = threshold
        self.config.validate()

    def set_mode(self, mode: str) -> None:
        self.config.mode = mode
        self.config.validate()

    # ---------------------------------------------------------------- forward
    def forward(self, x: Tensor, *, exits: tuple[int, ...] | None = None, compact: bool = True) -> ModelOutput:
        """Classify ``x``.

        ``exits`` forces an iteration count per block (anytime training, stop-label search);
        otherwise the config's mode decides.
        """
        rule, fixed = self._policy(exits)
        h = self.stem(x)
        results = []
        for b, block in enumerate(self.blocks):
            if b > 0:
                h = self.pool(h)
            result = block(h, rule=rule, threshold=self.config.halting_threshold,
                           exit_at=None if fixed is None else fixed[b], compact=compact)
            results.append(result)
            h = result.output
        logits = self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))
        iterations = torch.stack([r.iterations for r in results], dim=1)
        head_evaluations = torch.stack([r.head_evaluations for r in results], dim=1)
        return ModelOutput(
            logits=logits,
            iterations=iterations,
            halting=[r.halting for r in results],
            ponder_cost=sum(r.ponder_cost for r in results),
            macs=self.macs_for(iterations, head_evaluations),
        )

    def _policy(self, exits: tuple[int, ...] | None) -> tuple[str, tuple[int, ...] | None]:
        if exits is not None:
            return "fixed", tuple(exits)
        mode = self.config.mode
        if mode == "max":
            return "fixed", self.caps
        if mode.startswith("fixed:"):
            return "fixed", (self.config.fixed_iterations(),) * 4
        return ("act" if self.config.halting == "act" else "hazard"), None

    # ------------------------------------------------------------------ costs
    def _block_resolutions(self) -> list[tuple[int, int]]:
        size = self.config.image_size
        if not self.config.small_stem:
            size = (size + 2 * 3 - 7) // 2 + 1  # 7x7 stride-2 conv
            size = (size + 2 * 1 - 3) // 2 + 1  # 3x3 stride-2 max-pool
        sizes = []
        for b in range(len(self.blocks)):
            if b > 0:
                size //= 2
            sizes.append((size, size))
        return sizes

    def unit_costs(self) -> dict:
        """MACs of the fixed parts and of one iteration / one head evaluation per block."""
        cfg, size = self.config, self.config.image_size
        if cfg.small_stem:
            stem = conv_macs(size, size, cfg.in_channels, cfg.width, 3)
        else:
            out = (size + 2 * 3 - 7) // 2 + 1
            stem = conv_macs(out, out, cfg.in_channels, cfg.width, 7)
        return {
            "stem": stem,
            "input": [blk.input_macs(*hw) for blk, hw in zip(self.blocks, self._spatial)],
            "iteration": [blk.iteration_macs(*hw) for blk, hw in zip(self.blocks, self._spatial)],
            "head": [blk.head_macs() for blk in self.blocks],
            "classifier": self.fc.in_features * self.fc.out_features,
        }

    def macs_for(self, iterations: Tensor, head_evaluations: Tensor) -> Tensor:
        """Exact per-image MACs from iterations and head evaluations per block."""
        costs = self.unit_costs()
        it = torch.tensor(costs["iteration"], dtype=torch.long, device=iterations.device)
        hd = torch.tensor(costs["head"], dtype=torch.long, device=iterations.device)
        fixed = costs["stem"] + sum(costs["input"]) + costs["classifier"]
        return fixed + (iterations.long() * it).sum(1) + (head_evaluations.long() * hd).sum(1)

    def macs_range(self) -> tuple[int, int]:
        """(cheapest, dearest) possible per-image MACs in adaptive mode."""
        ones = torch.ones(1, len(self.blocks), dtype=torch.long)
        caps = torch.tensor([self.caps])
        low = self.macs_for(ones, torch.minimum(ones, caps - 1))
        high = self.macs_for(caps, caps - 1)
        return int(low), int(high)


def build_model(config: ModelConfig) -> nn.Module:
    """Build an IamNN (or, with ``architecture="resnet"``, its unshared ResNet baseline)."""
    config.validate()
    if config.architecture == "resnet":
        from .baseline import build_baseline

        return build_baseline(config)
    if config.block not in BLOCKS:
        from .plugins import load_plugins  # a plugin may provide the processing block

        load_plugins()
    if config.block not in BLOCKS:
        raise ValueError(f"block: unknown processing block {config.block!r} (known: {', '.join(BLOCKS.names())})")
    return IamNN(config)
