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
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .halting import act_step, hazard_step
from .layers import BLOCKS, HaltingHead, bn_affine, cache_key, conv_macs, exporting, norm_tensors, per_iteration_norms


#: In eval mode, halted samples stay in the running batch (computed, unused) until they are this
#: share of it; then the survivors are gathered out. Measured in benchmarks/bench_early_exit.py.
LAZY_COMPACTION = 0.15


def layout_of(x: Tensor) -> torch.memory_format:
    """channels_last where ``x`` is laid out so (a new tensor like it then needs no transposing copy)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def take_rows(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` along the batch dimension (same values, same layout), as whole images copied.

    Indexing a channels_last map walks it element by element; in memory each of its images is one
    contiguous row, so ``index_select`` over those rows copies them whole: 4-5x quicker on the maps
    the compaction gathers (one thread, 128 images). Contiguous tensors take ``index_select`` as they are.
    With autograd recording, plain indexing: its backward gives the gradients bit for bit as before (the
    rows' backward lays the gradient out differently, which moved them by ~1e-11).
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return x[index]
    if layout_of(x) is torch.channels_last:
        batch, channels, height, width = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(batch, -1)  # a view: no copy
        return rows.index_select(0, index).view(len(index), height, width, channels).permute(0, 3, 1, 2)
    return x.index_select(0, index) if x.is_contiguous() else x[index]


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

    def update(self, out: Tensor) -> Tensor:
        """Add one iteration's GAP(output); returns concat(GAP(state), GAP(x0), GAP(output))."""
        self.state = self.state + out
        return torch.cat([self.state, self.x0, out], dim=1)

    def keep(self, keep: Tensor) -> None:
        """Keep the samples at indices ``keep``."""
        self.x0, self.state = take_rows(self.x0, keep), take_rows(self.state, keep)


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
        return int(prepare_macs(height, width)) if prepare_macs else 0

    def iteration_macs(self, height: int, width: int) -> int:
        return int(self.process.macs(height, width))  # a plugin's may be a whole float (h * w * c * 9 / 1)

    def first_iteration_macs(self, height: int, width: int) -> int:
        """The first iteration starts from the zero state: blocks with ``step`` skip the state's part."""
        state_macs = getattr(self.process, "state_macs", None)
        skipped = int(state_macs(height, width)) if state_macs and hasattr(self.process, "step") else 0
        return self.iteration_macs(height, width) - skipped

    def head_macs(self) -> int:
        """One halting decision: the head, plus what inference spends on its input (``head_input_macs``)."""
        head_input_macs = getattr(self.process, "head_input_macs", None)
        return self.halting_head.macs() + (int(head_input_macs()) if head_input_macs else 0)

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        x0: Tensor,
        *,
        rule: str,
        threshold: float,
        exit_at: int | None = None,
        compact: bool = True,
        reduce: str | None = None,
        limit: int | None = None,
    ) -> BlockResult:
        """Run the block.

        Args:
            rule: "act" (Graves ACT), "hazard" (calibrated halting) or "fixed".
            exit_at: for ``rule="fixed"``, the iteration count (capped at the block's cap).
            limit: for the halting rules, the most iterations to run (the model's ``halting_caps``;
                None: the cap). Every sample still running halts there.
            compact: gather the running samples after each iteration (True) or mask (False).
            reduce: "pool" or "gap" returns the output already max-pooled or globally averaged for
                what follows the block (cheaper in inference, see ``_exit``); None, as it is.
        """
        if rule == "fixed":
            return self._run_fixed(x0, min(int(exit_at), self.cap), reduce)
        limit = self.cap if limit is None else min(int(limit), self.cap)
        if compact and rule == "hazard":
            return self._run_compacted(x0, rule, threshold, limit, reduce)
        result = (self._run_compacted(x0, rule, threshold, limit) if compact
                  else self._run_masked(x0, rule, threshold, limit))
        if reduce is not None:  # ACT's output is a weighted mean of exits: reduced as a whole
            result.output = reduce_features(result.output, reduce)
        return result

    def prepare(self, x0: Tensor) -> Tensor:
        """What every iteration needs from x0. Processing blocks with ``prepare``/``step``
        compute the x0 part of their first (linear) convolution once per block instead of
        convolving concat(x0, state) at every iteration; others get x0 itself."""
        return self.process.prepare(x0) if hasattr(self.process, "step") else x0

    def _advance(self, prepared: Tensor, state: Tensor | None, n: int, *, pooled: PooledFeatures | None,
                 in_place: bool) -> tuple[Tensor, Tensor | None]:
        """(new state, the halting head's input after this iteration when ``pooled`` is given).

        With ``in_place``, inference may compute the new state in ``state``'s memory (the caller no
        longer needs the old one) through the processing block's fused ``advance``, which also
        returns GAP(output).
        """
        fast = getattr(self.process, "advance", None)
        if fast is not None and in_place and self._inferring():
            state, pooled_output = fast(prepared, state, n, pool_output=pooled is not None)
            return state, (None if pooled is None else pooled.update(pooled_output))
        new_state, out = self._step(prepared, state, n)
        return new_state, (None if pooled is None else pooled.update(out.mean(dim=(2, 3))))

    def _inferring(self) -> bool:
        """Eval mode, no autograd, no export: where the fast inference paths apply."""
        return not self.training and not torch.is_grad_enabled() and not exporting()

    def _exit(self, state: Tensor, n: int, reduce: str | None) -> Tensor:
        """The block output of samples leaving after iteration ``n`` (``exit_norm[n](state)``), reduced
        for what follows: ``"pool"`` (2x2 max-pool, before the next block), ``"gap"`` (global
        average, before the classifier) or None.

        In inference the eval batchnorm, a per-channel affine map, moves after the reduction where
        that gives the same values (always for the average; for the max-pool where every scale is
        positive): it then runs on 4x (pool) or H*W times (average) fewer values.
        """
        norm = self.exit_norm[n]
        if reduce is None:
            return norm(state)
        if not (self._inferring() and norm.running_mean is not None):
            return reduce_features(norm(state), reduce)
        scale, shift, positive = exit_affine(norm)
        if reduce == "gap":
            return torch.addcmul(shift, state.mean(dim=(2, 3)), scale)
        if not positive:
            return max_pool_2x2(norm(state))
        return torch.addcmul(shift.view(1, -1, 1, 1), max_pool_2x2(state), scale.view(1, -1, 1, 1))

    def _step(self, prepared: Tensor, state: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
        """(new state, output) of iteration ``n``; ``state=None`` is the zero state s_0."""
        if hasattr(self.process, "step"):
            out = self.process.step(prepared, state, n)
        else:
            if state is None:
                state = prepared.new_zeros(prepared.shape[0], self.channels, *prepared.shape[2:])
            out = self.process(torch.cat([prepared, state], dim=1), n)
        return (out if state is None else state + out), out

    def _run_fixed(self, x0: Tensor, n_iter: int, reduce: str | None = None) -> BlockResult:
        batch = x0.shape[0]
        state = None
        prepared = self.prepare(x0)
        for n in range(n_iter):
            state, _ = self._advance(prepared, state, n, pooled=None, in_place=True)
        iterations = torch.full((batch,), n_iter, dtype=torch.long, device=x0.device)
        return BlockResult(
            output=self._exit(state, n_iter - 1, reduce),
            iterations=iterations,
            halting=x0.new_full((batch, self.cap), math.nan, dtype=torch.float32),
            ponder_cost=iterations.float(),
            head_evaluations=torch.zeros_like(iterations),
        )

    def _run_compacted(self, x0: Tensor, rule: str, threshold: float, limit: int,
                       reduce: str | None = None) -> BlockResult:
        batch, device = x0.shape[0], x0.device
        running = torch.arange(batch, device=device)  # global index of each running sample
        x = self.prepare(x0)
        state: Tensor | None = None  # s_0 = 0
        cumulative = torch.zeros(batch, device=device)
        weighted: Tensor | None = None  # ACT's running weighted mean of the states
        halting = torch.full((batch, self.cap), math.nan, device=device)
        iterations = torch.zeros(batch, dtype=torch.long, device=device)
        # the hazard rule's ponder cost is the iteration count: derived from it once at the end
        ponder = torch.zeros(batch, device=device) if rule == "act" else None
        pooled = PooledFeatures(x0, self.channels)
        output: Tensor | None = None  # every sample's exit is written into it once, in place
        inferring = self._inferring()

        # In eval mode a few halted rows may ride along unused ("zombies") until they are
        # LAZY_COMPACTION of the batch: copying the survivors out costs more than a little
        # wasted compute. Training compacts at once (batchnorm statistics must not see them).
        lazy = 0.0 if self.training else LAZY_COMPACTION
        alive: Tensor | None = None  # rows of the current batch still running; None: all of them
        alive_count = batch
        # First iteration in inference: decide who leaves from the hidden layer, then run the last
        # convolution on the leavers and the stayers apart (``advance_hidden``): what is gathered is
        # then the hidden layer, 4x narrower than the state, where most images leave.
        split_first = rule == "hazard" and inferring and hasattr(self.process, "advance_hidden")
        for n in range(limit):
            last = n == limit - 1
            hidden: Tensor | None = None
            if split_first and state is None and not last:
                hidden, pooled_output = self.process.advance_hidden(x, None, n, pool_output=True)
                features = pooled.update(pooled_output)
            else:
                state, features = self._advance(x, state, n, pooled=None if last else pooled, in_place=True)
            score = None if last else self.halting_head.score(features, n)
            if score is not None:
                score_value = score.detach().float().to(halting.dtype)
                if alive is not None:  # rows that left already keep their NaN (no boolean indexing: no host sync)
                    score_value = torch.where(alive, score_value, math.nan)
                halting.select(1, n).index_copy_(0, running, score_value)
            if rule == "act":
                halt, weight, new_cumulative = act_step(cumulative, score, threshold)
                contribution = weight.view(-1, 1, 1, 1).to(state.dtype) * self.exit_norm[n](state)
                weighted = contribution if weighted is None else weighted + contribution
                sample_ponder = (n + 1) + (1.0 - cumulative)  # N + R for those halting now
            else:
                halt, new_cumulative = hazard_step(cumulative, score, threshold)
                sample_ponder = None
            cumulative = new_cumulative
            if alive is not None:
                halt = halt & alive

            halted = halt.nonzero().squeeze(1)  # the one host sync of the iteration
            staying = alive_count - len(halted)
            compacting = len(halted) > 0 and (staying == 0 or 1.0 - staying / len(running) >= lazy)
            if hidden is not None and not compacting:  # everyone's state after all
                state, hidden = self.process.advance_state(hidden, None, n), None
            if len(halted):
                every_row = len(halted) == len(running)  # the rest of the batch leaves: no gather
                if rule == "act":
                    exit_value = weighted if every_row else take_rows(weighted, halted)
                elif hidden is not None:
                    leaving = self.process.advance_state(hidden if every_row else take_rows(hidden, halted), None, n)
                    exit_value = self._exit(leaving, n, reduce)
                elif every_row:
                    exit_value = self._exit(state, n, reduce)
                elif reduce is not None and inferring and 2 * len(halted) >= len(running):
                    # most rows leave: reduce them all (rows do not mix in eval mode), then gather the
                    # leavers from the 4x (pool) or H*W x (average) smaller result instead of the state
                    exit_value = take_rows(self._exit(state, n, reduce), halted)
                else:
                    exit_value = self._exit(take_rows(state, halted), n, reduce)
                if output is None:
                    output = torch.empty((batch, *exit_value.shape[1:]), dtype=exit_value.dtype,
                                         device=device, memory_format=layout_of(exit_value))
                where = running.index_select(0, halted)
                output.index_copy_(0, where, exit_value)
                iterations.index_fill_(0, where, n + 1)
                if ponder is not None:
                    ponder[where] = sample_ponder[halted].to(ponder.dtype)
            alive_count = staying
            if alive_count == 0:
                break
            if len(halted):
                alive = ~halt if alive is None else alive & ~halt
                if compacting:
                    keep = alive.nonzero().squeeze(1)
                    state = (take_rows(state, keep) if hidden is None
                             else self.process.advance_state(take_rows(hidden, keep), None, n))
                    running, cumulative = running.index_select(0, keep), cumulative.index_select(0, keep)
                    x = take_rows(x, keep)
                    pooled.keep(keep)
                    if weighted is not None:
                        weighted = take_rows(weighted, keep)
                    alive = None

        return BlockResult(
            output=output,
            iterations=iterations,
            halting=halting,
            ponder_cost=iterations.to(halting.dtype) if ponder is None else ponder,
            head_evaluations=iterations.clamp(max=limit - 1),
        )

    def _run_masked(self, x0: Tensor, rule: str, threshold: float, limit: int) -> BlockResult:
        """Every sample runs every iteration; halted samples' state, output and scores are frozen."""
        batch, device = x0.shape[0], x0.device
        state = output = None  # s_0 = 0; the block output is set at each sample's exit
        cumulative = torch.zeros(batch, device=device)
        running = torch.ones(batch, dtype=torch.bool, device=device)
        iterations = torch.zeros(batch, dtype=torch.long, device=device)
        ponder = torch.zeros(batch, device=device)
        pooled = PooledFeatures(x0, self.channels)
        prepared = self.prepare(x0)
        scores = []
        for n in range(limit):
            new_state, features = self._advance(prepared, state, n, pooled=pooled, in_place=False)
            # every sample runs the first iteration, so s_1 needs no mask
            state = new_state if state is None else torch.where(running.view(-1, 1, 1, 1), new_state, state)
            if output is None:
                output = torch.zeros_like(state)
            score = None if n == limit - 1 else self.halting_head.score(features, n)
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
        scores += [torch.full((batch,), math.nan, device=device)] * (self.cap - limit)  # never run
        return BlockResult(
            output=output,
            iterations=iterations,
            halting=torch.stack(scores, dim=1),
            ponder_cost=ponder,
            head_evaluations=iterations.clamp(max=limit - 1),
        )


def max_pool_2x2(x: Tensor) -> Tensor:
    """2x2 max-pool, stride 2, floor mode: ``MaxPool2x2``'s inference path as a function."""
    if (torch.is_grad_enabled() and x.requires_grad) or exporting() or x.dim() != 4:
        return F.max_pool2d(x, 2)
    batch, channels, height, width = x.shape
    if height % 2 == 0 and width % 2 == 0 and x.is_contiguous(memory_format=torch.channels_last):
        # channels_last (the model's layout): in memory a pair of rows is one block and a pair of
        # neighbouring pixels 2 x channels contiguous values, so two maxima over contiguous halves do
        # it: 20-30 % quicker than the four strided quarters below on 28x28 maps, same values
        rows = x.permute(0, 2, 3, 1).view(batch, height // 2, 2, width // 2, 2 * channels)
        rows = torch.maximum(rows[:, :, 0], rows[:, :, 1]).view(batch, height // 2, width // 2, 2, channels)
        return torch.maximum(rows[:, :, :, 0], rows[:, :, :, 1]).permute(0, 3, 1, 2)
    h, w = height // 2 * 2, width // 2 * 2  # floor mode: an odd last row/column is dropped
    return torch.maximum(
        torch.maximum(x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2]),
        torch.maximum(x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]),
    )


def reduce_features(x: Tensor, reduce: str) -> Tensor:
    """What follows a block: "pool" (2x2 max-pool before the next block) or "gap" (global average
    pool, flattened, before the classifier)."""
    if reduce == "pool":
        return max_pool_2x2(x)
    if reduce == "gap":
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
    raise ValueError(f"reduce: unknown reduction {reduce!r}")


def exit_affine(norm: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor, bool]:
    """(scale, shift, every scale > 0) of an eval batchnorm, cached on it until a parameter or
    statistic changes (versions), so the positivity test costs one host sync per change, not per call."""
    key = cache_key(norm_tensors(norm))
    hit = norm.__dict__.get("_affine_cache")
    if hit is None or hit[0] != key:
        scale, shift = bn_affine(norm)
        hit = norm.__dict__["_affine_cache"] = (key, (scale, shift, bool((scale > 0).all())))
    return hit[1]


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)``; without autograd, as four strided maxima: ~7x faster on CPU in NCHW
    (benchmarks/bench_early_exit.py), same values. Training keeps PyTorch's kernel, whose backward is faster."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: Tensor) -> Tensor:
        return max_pool_2x2(x)


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
        self.pool = MaxPool2x2()
        self.fc = nn.Linear(in_channels, config.num_classes)
        self._spatial = self._block_resolutions()

    # ------------------------------------------------------------------ knobs
    @property
    def caps(self) -> tuple[int, ...]:
        return tuple(block.cap for block in self.blocks)

    @property
    def adaptive_caps(self) -> tuple[int, ...]:
        """The most iterations per block the halting may use (``config.halting_caps``, else the caps)."""
        return self.config.adaptive_caps

    def set_halting_caps(self, limits: tuple[int, ...] | None) -> None:
        """Limit adaptive inference to ``limits`` iterations per block (None: the caps)."""
        previous = self.config.halting_caps
        self.config.halting_caps = None if limits is None else tuple(int(n) for n in limits)
        try:
            self.config.validate()
        except ValueError:
            self.config.halting_caps = previous
            raise

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
        h = self.stem_output(x)
        results = []
        last = len(self.blocks) - 1
        limits = self.adaptive_caps
        for b, block in enumerate(self.blocks):
            # each block hands over its output already reduced for what follows it: max-pooled for
            # the next block, globally averaged for the classifier (``IamNNBlock._exit``)
            result = block(h, rule=rule, threshold=self.config.halting_threshold,
                           exit_at=None if fixed is None else fixed[b], compact=compact,
                           reduce="gap" if b == last else "pool", limit=limits[b])
            results.append(result)
            h = result.output
        logits = self.fc(h)
        iterations = torch.stack([r.iterations for r in results], dim=1)
        head_evaluations = torch.stack([r.head_evaluations for r in results], dim=1)
        return ModelOutput(
            logits=logits,
            iterations=iterations,
            halting=[r.halting for r in results],
            ponder_cost=sum(r.ponder_cost for r in results),
            macs=self.macs_for(iterations, head_evaluations),
        )

    def stem_output(self, x: Tensor) -> Tensor:
        """The stem's output, in the layout the blocks run in.

        channels_last, oneDNN's and cuDNN's native layout: 1x1 convolutions and max-pooling are several
        times faster on CPU than in NCHW (benchmarks/bench_early_exit.py); same values. The stem's output
        is converted too: for one input channel the two layouts are the same tensor and PyTorch then
        keeps NCHW.
        """
        h = self.stem(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)
        return h.contiguous(memory_format=torch.channels_last) if h.dim() == 4 else h

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
        """MACs of the fixed parts and, per block, of the first iteration, of each later one and of
        one head evaluation."""
        cfg, size = self.config, self.config.image_size
        if cfg.small_stem:
            stem = conv_macs(size, size, cfg.in_channels, cfg.width, 3)
        else:
            out = (size + 2 * 3 - 7) // 2 + 1
            stem = conv_macs(out, out, cfg.in_channels, cfg.width, 7)
        return {
            "stem": stem,
            "input": [blk.input_macs(*hw) for blk, hw in zip(self.blocks, self._spatial)],
            "first_iteration": [blk.first_iteration_macs(*hw) for blk, hw in zip(self.blocks, self._spatial)],
            "iteration": [blk.iteration_macs(*hw) for blk, hw in zip(self.blocks, self._spatial)],
            "head": [blk.head_macs() for blk in self.blocks],
            "classifier": self.fc.in_features * self.fc.out_features,
        }

    def macs_for(self, iterations: Tensor, head_evaluations: Tensor) -> Tensor:
        """Exact per-image MACs from iterations and head evaluations per block."""
        costs = self.unit_costs()
        it = torch.tensor(costs["iteration"], dtype=torch.long, device=iterations.device)
        hd = torch.tensor(costs["head"], dtype=torch.long, device=iterations.device)
        # every image runs each block's first iteration: it is a fixed cost, the later ones are not
        fixed = costs["stem"] + sum(costs["input"]) + sum(costs["first_iteration"]) + costs["classifier"]
        return fixed + ((iterations.long() - 1) * it).sum(1) + (head_evaluations.long() * hd).sum(1)

    def macs_range(self) -> tuple[int, int]:
        """(cheapest, dearest) possible per-image MACs in adaptive mode."""
        ones = torch.ones(1, len(self.blocks), dtype=torch.long)
        caps = torch.tensor([self.adaptive_caps])
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
        from .plugins import MissingBlockError, load_plugins  # a plugin may provide the processing block

        load_plugins()
        if config.block not in BLOCKS:
            raise MissingBlockError(config.block, BLOCKS.names())
    return IamNN(config)
