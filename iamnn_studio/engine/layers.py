"""Reusable layers of IamNN: per-iteration batchnorm, the processing block, the halting head.

Processing blocks are looked up by name in ``BLOCKS`` so plugins can add variants
(e.g. the depthwise-separable block the paper names as future work). A block factory is
called as ``factory(in_channels, channels, width, iterations)`` and returns a module with
``forward(x, iteration) -> Tensor`` over ``x = concat(x0, state)`` and ``macs(height, width) -> int``
(per sample, per iteration). A block may also offer ``prepare(x0)``, ``step(prepared, state,
iteration)``, ``prepare_macs(height, width)`` and ``state_macs(height, width)`` to compute the part
that depends on x0 alone once per block instead of at every iteration; ``step`` gets ``state=None``
at the first iteration, where the state is still zero and its part of the work can be skipped.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import Registry

#: Below this many samples a training batch does not update the running statistics: a handful
#: of survivors of the halting gives estimates too noisy to keep. It still normalises with its
#: own batch statistics, which stay bounded (normalising a tiny subset with running statistics
#: that are not yet settled made activations, and then the loss, explode early in training).
MIN_BATCH_FOR_STATS = 16


def _small_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    if x.shape[0] * x[0, 0].numel() > 1:  # batch statistics exist: use them, keep running ones
        return F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


class SubsetSafeBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that leaves its running statistics alone on tiny training subsets."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] < MIN_BATCH_FOR_STATS:
            return _small_batch_norm(self, x)
        return super().forward(x)


class SubsetSafeBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d with the same tiny-subset rule (one sample: running statistics)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] < MIN_BATCH_FOR_STATS:
            return _small_batch_norm(self, x)
        return super().forward(x)


def per_iteration_norms(channels: int, iterations: int, dims: int = 2) -> nn.ModuleList:
    """One batchnorm per iteration: the paper finds separate statistics per iteration essential."""
    norm = SubsetSafeBatchNorm2d if dims == 2 else SubsetSafeBatchNorm1d
    return nn.ModuleList(norm(channels) for _ in range(iterations))


def exporting() -> bool:
    """Whether torch.jit.trace or torch.export / dynamo is recording: exported graphs keep plain ops."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def bn_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """(scale, shift) with eval-mode ``bn(x) == x * scale + shift`` per channel."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def norm_tensors(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor | None, ...]:
    """(weight, bias, running mean, running variance, batches tracked) of a batchnorm, read without
    ``nn.Module.__getattr__`` (the caches of folded weights check them at every call). The count is there
    for the caches' keys: a training forward rewrites the running statistics without bumping their
    versions, but it counts the batch with an in-place add, which does."""
    parameters, buffers = bn._parameters, bn._buffers
    return (parameters.get("weight"), parameters.get("bias"), buffers.get("running_mean"), buffers.get("running_var"),
            buffers.get("num_batches_tracked"))


def cache_key(tensors) -> tuple:
    """What a cache of values derived from ``tensors`` is valid for: their storage and versions (every
    in-place change bumps a tensor's version); None entries are skipped."""
    return tuple([(t.data_ptr(), t._version) for t in tensors if t is not None])


def conv1x1_add_(target: Tensor, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``target += conv2d(x, weight, bias)`` for a 1x1 convolution, in place.

    On CPU float32 this is oneDNN's convolution with a fused "add" post-op (the op PyTorch's
    inductor emits for the same pattern): the sum is written as the convolution's output, so the
    activations are not read and written a second time. Elsewhere, or if that op is missing, an
    in-place addition.
    """
    if target.device.type == "cpu" and target.dtype == torch.float32 and torch.backends.mkldnn.is_available():
        try:
            return torch.ops.mkldnn._convolution_pointwise_.binary(
                target, x, weight, bias, [0, 0], [1, 1], [1, 1], 1, "add", None, None, [], None)
        except (AttributeError, RuntimeError):  # op absent in this build, or a layout it refuses
            pass
    return target.add_(F.conv2d(x, weight, bias))


def _register_fused_conv_flops() -> None:
    """Teach ``FlopCounterMode`` the fused convolution above, so counted FLOPs stay exact."""
    try:
        from torch.utils.flop_counter import conv_flop_count, register_flop_formula

        fused = torch.ops.mkldnn._convolution_pointwise_  # the packet: the counter takes no overloads
    except (ImportError, AttributeError, RuntimeError):
        return

    @register_flop_formula(fused)
    def fused_conv_flop(_target_shape, x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        # every overload takes (other, X, W, ...): the convolution is X * W whatever the post-op
        return conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


_register_fused_conv_flops()


def conv_macs(height: int, width: int, in_channels: int, out_channels: int, kernel: int, groups: int = 1) -> int:
    """Multiply-accumulates of a stride-1 'same' convolution, per sample."""
    return height * width * (in_channels // groups) * out_channels * kernel * kernel


BLOCKS: Registry = Registry("processing block")


@dataclass(frozen=True)
class FoldedIteration:
    """One iteration's eval-mode convolutions with their batchnorms folded in."""

    scale1: Tensor
    shift1: Tensor
    state_weight: Tensor
    weight2: Tensor
    shift2: Tensor
    weight3: Tensor
    shift3: Tensor


@BLOCKS.register("bottleneck")
class BottleneckProcessing(nn.Module):
    """The paper's processing block: 1x1 -> 3x3 -> 1x1 convolutions over concat(x0, state).

    Convolution weights are shared by all iterations; each batchnorm has one copy per iteration.
    """

    def __init__(self, in_channels: int, channels: int, width: int, iterations: int) -> None:
        super().__init__()
        self.in_channels, self.channels, self.width = in_channels, channels, width
        self.conv1 = nn.Conv2d(in_channels + channels, width, 1, bias=False)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(width, channels, 1, bias=False)
        self.bn1 = per_iteration_norms(width, iterations)
        self.bn2 = per_iteration_norms(width, iterations)
        self.bn3 = per_iteration_norms(channels, iterations)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, iteration: int) -> Tensor:
        """One iteration on concat(x0, state) (the paper's form; ``prepare``/``step`` is the fast one)."""
        return self._rest(self.conv1(x), iteration)

    # conv1 is linear: conv1(concat(x0, s)) = conv1_x0(x0) + conv1_s(s). x0 does not change between
    # iterations, so its part is computed once per block and only the state part runs each time.
    def prepare(self, x0: Tensor) -> Tensor:
        return F.conv2d(x0, self.conv1.weight[:, : self.in_channels])

    def step(self, prepared: Tensor, state: Tensor | None, iteration: int) -> Tensor:
        """One iteration; ``state=None`` is the zero state of the first one (its convolution is zero)."""
        if not self.training:
            return self._folded_step(prepared, state, iteration)
        if state is None:
            return self._rest(prepared, iteration)
        return self._rest(prepared + F.conv2d(state, self.conv1.weight[:, self.in_channels:]), iteration)

    def _rest(self, reduced: Tensor, iteration: int) -> Tensor:
        out = self.relu(self.bn1[iteration](reduced))
        out = self.relu(self.bn2[iteration](self.conv2(out)))
        return self.bn3[iteration](self.conv3(out))

    def _folded_step(self, prepared: Tensor, state: Tensor | None, n: int) -> Tensor:
        """``step`` in eval mode, with each batchnorm folded into the convolution before it."""
        folded = self._folded(n)
        return F.conv2d(self._folded_hidden(prepared, state, folded), folded.weight3, folded.shift3)

    # Eval batchnorm is a per-channel affine map, so conv -> BN is one convolution with scaled
    # weights and a bias: two fewer passes over the activations per iteration, which is most of the
    # non-convolution time on a CPU. BN1 follows a sum (x0's part is computed once per block), so
    # its scale reaches that part through one fused multiply-add.
    @staticmethod
    def _folded_hidden(prepared: Tensor, state: Tensor | None, folded: FoldedIteration) -> Tensor:
        """relu(bn2(conv2(relu(bn1(conv1(concat(x0, state))))))) with folded batchnorms."""
        if state is None:
            reduced = torch.addcmul(folded.shift1.view(1, -1, 1, 1), prepared, folded.scale1.view(1, -1, 1, 1))
        else:
            reduced = F.conv2d(state, folded.state_weight, folded.shift1).addcmul_(prepared, folded.scale1.view(1, -1, 1, 1))
        return F.conv2d(reduced.relu_(), folded.weight2, folded.shift2, padding=1).relu_()

    def _folded(self, n: int) -> FoldedIteration:
        """Iteration ``n``'s folded weights. For inference they are cached and recomputed only when a
        weight or statistic has changed (every in-place change bumps a tensor's version); with
        autograd on, or while exporting, they are computed in the graph."""
        if torch.is_grad_enabled() or exporting():
            return self._fold(n)
        # read through the modules' dictionaries: ``nn.Module.__getattr__`` made this check 23 us a call,
        # two or three calls per iteration of an adaptive pass (4 us so)
        modules = self._modules
        weights = [modules[name]._parameters.get("weight") for name in ("conv1", "conv2", "conv3")]
        if any(w is None for w in weights):  # pruned or parametrized: its weight comes from a hook
            return self._fold(n)
        tensors = list(weights)
        for name in ("bn1", "bn2", "bn3"):
            tensors += norm_tensors(modules[name]._modules[str(n)])
        key = cache_key(tensors)
        cache = self.__dict__.setdefault("_folded_cache", {})
        hit = cache.get(n)
        if hit is None or hit[0] != key:
            hit = cache[n] = (key, self._fold(n))
        return hit[1]

    def _fold(self, n: int) -> FoldedIteration:
        scale1, shift1 = bn_affine(self.bn1[n])
        scale2, shift2 = bn_affine(self.bn2[n])
        scale3, shift3 = bn_affine(self.bn3[n])
        return FoldedIteration(
            scale1=scale1, shift1=shift1,
            state_weight=self.conv1.weight[:, self.in_channels:] * scale1.view(-1, 1, 1, 1),
            # in the activations' layout: a convolution otherwise copies its weight into it at every call
            weight2=(self.conv2.weight * scale2.view(-1, 1, 1, 1)).contiguous(memory_format=torch.channels_last),
            shift2=shift2,
            weight3=self.conv3.weight * scale3.view(-1, 1, 1, 1), shift3=shift3,
        )

    def advance(self, prepared: Tensor, state: Tensor | None, n: int, *, pool_output: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """Inference only (eval mode, no autograd): (the next state, GAP of this iteration's output
        when ``pool_output``). The next state is computed in ``state``'s memory.

        The update is one convolution that adds into the state: no output tensor, no separate
        addition pass over the activations. The last convolution is linear, so the output's global
        average is that convolution applied to the hidden layer's average: a pass over ``width``
        channels instead of the output's ``channels`` (4x fewer).
        """
        hidden, pooled = self.advance_hidden(prepared, state, n, pool_output=pool_output)
        return self.advance_state(hidden, state, n), pooled

    # ``advance`` in two halves. The halting decision needs only the first, so inference can decide
    # who leaves before the last convolution and run that convolution on each group apart: the
    # groups are then gathered from the hidden layer (``width`` channels), not from the 4x wider state.
    def advance_hidden(self, prepared: Tensor, state: Tensor | None, n: int, *, pool_output: bool = False
                       ) -> tuple[Tensor, Tensor | None]:
        """(the hidden layer before the last convolution, GAP(output) when ``pool_output``)."""
        folded = self._folded(n)
        hidden = self._folded_hidden(prepared, state, folded)
        pooled = None
        if pool_output:
            pooled = F.linear(hidden.mean(dim=(2, 3)), folded.weight3.flatten(1), folded.shift3)
        return hidden, pooled

    def advance_state(self, hidden: Tensor, state: Tensor | None, n: int) -> Tensor:
        """The next state from ``advance_hidden``'s hidden layer (in ``state``'s memory)."""
        folded = self._folded(n)
        if state is None:
            return F.conv2d(hidden, folded.weight3, folded.shift3)
        return conv1x1_add_(state, hidden, folded.weight3, folded.shift3)

    def head_input_macs(self) -> int:
        """Per head evaluation in inference: ``advance`` projects the pooled hidden layer to GAP(output)."""
        return self.width * self.channels

    def prepare_macs(self, height: int, width: int) -> int:
        return conv_macs(height, width, self.in_channels, self.width, 1)

    def state_macs(self, height: int, width: int) -> int:
        """The state's part of the first convolution: skipped at the first iteration (zero state)."""
        return conv_macs(height, width, self.channels, self.width, 1)

    def macs(self, height: int, width: int) -> int:
        """Per iteration after the first, after ``prepare``."""
        return (
            conv_macs(height, width, self.channels, self.width, 1)
            + conv_macs(height, width, self.width, self.width, 3)
            + conv_macs(height, width, self.width, self.channels, 1)
        )


class HaltingHead(nn.Module):
    """Scores one iteration: GAP(concat(state, x0, output)) -> 64 -> 64 -> sigmoid.

    The pooled features are batch-normalised first (one set of statistics per iteration, as in
    SACT) so the head sees comparable inputs at every iteration; the output bias starts at -3
    so that, untrained, a block runs deep rather than collapsing to one iteration.
    """

    hidden = 64

    def __init__(self, features: int, iterations: int) -> None:
        super().__init__()
        self.features = features
        self.norm = per_iteration_norms(features, iterations, dims=1)
        self.fc1 = nn.Linear(features, self.hidden)
        self.fc2 = nn.Linear(self.hidden, self.hidden)
        self.out = nn.Linear(self.hidden, 1)
        nn.init.constant_(self.out.bias, -3.0)

    @staticmethod
    def pooled(state: Tensor, x0: Tensor, output: Tensor) -> Tensor:
        """GAP(concat(state, x0, output)), without building the concatenated feature map."""
        return torch.cat([state.mean(dim=(2, 3)), x0.mean(dim=(2, 3)), output.mean(dim=(2, 3))], dim=1)

    def score(self, pooled: Tensor, iteration: int) -> Tensor:
        if not self.training and not torch.is_grad_enabled() and not exporting():
            folded = self._folded(iteration)
            if folded is not None:
                scale, shift, w1, b1, w2, b2, w3, b3 = folded
                z = torch.addmm(b1, torch.addcmul(shift, pooled.float(), scale), w1).relu_()
                z = torch.addmm(b2, z, w2).relu_()
                return torch.addmm(b3, z, w3).sigmoid_().squeeze(1)
        z = self.norm[iteration](pooled.float())
        z = F.relu(self.fc1(z))
        z = F.relu(self.fc2(z))
        return torch.sigmoid(self.out(z)).squeeze(1)

    # Inference: the eval batchnorm as one multiply-add with its cached scale and shift, and the three
    # layers as bare ``addmm`` calls (what ``F.linear`` runs, without the module calls around it): one
    # head evaluation is 7 small ops instead of ~20, same values (an adaptive pass evaluates a head at
    # every iteration but the last). Folding the batchnorm into fc1 would save one more op but moved
    # scores by up to 4e-5. Cached per iteration until a weight or statistic changes.
    def _folded(self, n: int) -> tuple[Tensor, ...] | None:
        """(norm scale, norm shift, fc1 weight^T, bias, fc2 weight^T, bias, out weight^T, bias); None where
        the norm has no running statistics (eval then normalises with the batch's own)."""
        modules = self._modules
        norm = modules["norm"]._modules[str(n)]
        layers = [modules[name]._parameters for name in ("fc1", "fc2", "out")]
        dense = [*(p.get("weight") for p in layers), *(p.get("bias") for p in layers)]
        statistics = norm_tensors(norm)
        if statistics[2] is None or any(t is None for t in dense):  # no running statistics; or a pruned or
            return None  # parametrized layer (its weight comes from a hook its forward runs): the module path
        key = cache_key([*statistics, *dense])
        cache = self.__dict__.setdefault("_folded_cache", {})
        hit = cache.get(n)
        if hit is None or hit[0] != key:
            fc1, fc2, out = self.fc1, self.fc2, self.out
            hit = cache[n] = (key, (*bn_affine(norm), fc1.weight.t(), fc1.bias, fc2.weight.t(), fc2.bias,
                                    out.weight.t(), out.bias))
        return hit[1]

    def forward(self, state: Tensor, x0: Tensor, output: Tensor, iteration: int) -> Tensor:
        return self.score(self.pooled(state, x0, output), iteration)

    def macs(self) -> int:
        return self.features * self.hidden + self.hidden * self.hidden + self.hidden
