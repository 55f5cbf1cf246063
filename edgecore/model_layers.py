"""A model's decoder layers, one at a time: from a model in memory (`InMemoryLayers`), or streamed
from a safetensors checkpoint on disk (`StreamedLayers`), so that pruning holds one layer's weights
in compute precision at a time and a model's size is bounded by disk, not memory. Both give the
same modules in the same precision, so what is computed on them is the same."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from edgecore.devices import model_device
from edgecore.errors import GPruneError, first_line
from edgecore.families import family_of, layer_shapes
from edgecore.loading import all_finite, check_weights_match, load_config
from edgecore.safetensors_io import StoredTensors

COMPUTE_DTYPE = torch.float32  # pruning's arithmetic, whatever the checkpoint stores
HEAD_BLOCK_BYTES = 64 << 20  # the output layer's rows read at a time (in COMPUTE_DTYPE) for logits from disk


class ModelLayers:
    """What pruning reads of a model: its config, one decoder layer at a time, single weights, and the
    modules before the first layer (embeddings, rotary embedding) for capturing that layer's inputs."""

    def __init__(self, config):
        self.config = config
        self.family = family_of(config)
        self.shapes = layer_shapes(config)

    def __len__(self) -> int:
        return len(self.shapes)

    @contextlib.contextmanager
    def layer(self, i: int, device: torch.device):
        """Decoder layer i on `device` for the duration of the block."""
        raise NotImplementedError

    def each(self, device: torch.device | str = "cpu"):
        """(i, layer) for every decoder layer, each on `device` only while it is being looked at."""
        for i in range(len(self)):
            with self.layer(i, torch.device(device)) as layer:
                yield i, layer

    def weight(self, i: int, role: str) -> torch.Tensor:
        """The weight of layer i's module `role` (e.g. "down_proj"), on the CPU in compute precision."""
        raise NotImplementedError

    @contextlib.contextmanager
    def body(self, device: torch.device):
        """The causal LM with its modules outside the decoder layers, but the input embedding, on `device`
        (the layers are not): run it on `embed`'s output."""
        raise NotImplementedError

    def embed(self, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The input embedding of token ids, computed on `device` by the model's own embedding module
        (family specifics such as Gemma's scaling included)."""
        raise NotImplementedError

    def output_logits(self, hidden: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The output layer (vocabulary projection) applied to `hidden` (on `device`): float32 logits."""
        raise NotImplementedError

    def outside_tensors(self):
        """(state-dict name, tensor) of every stored weight outside the decoder layers, in stored precision."""
        raise NotImplementedError


class InMemoryLayers(ModelLayers):
    def __init__(self, model: nn.Module):
        super().__init__(model.config)
        self.model = model
        self.device = model_device(model)  # where work runs unless told otherwise
        self.dtype = model.dtype
        self.generation_config = model.generation_config

    @contextlib.contextmanager
    def layer(self, i: int, device: torch.device):
        with _visiting(self.family.decoder_layers(self.model)[i], device) as layer:
            yield layer

    def weight(self, i: int, role: str) -> torch.Tensor:
        return self.family.module(self.family.decoder_layers(self.model)[i], role).weight.detach().cpu()

    @contextlib.contextmanager
    def body(self, device: torch.device):
        body = self.model.get_submodule(self.family.body_path)
        home = {name: model_device(m) for name, m in body.named_children()
                if name != "layers" and any(True for _ in m.parameters())}
        for name in home:
            getattr(body, name).to(device)
        try:
            yield self.model
        finally:
            for name, dev in home.items():
                getattr(body, name).to(dev)

    def embed(self, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
        with _visiting(self.model.get_input_embeddings(), device) as module:
            return module(ids.to(device))

    def output_logits(self, hidden: torch.Tensor, device: torch.device) -> torch.Tensor:
        with _visiting(self.model.get_output_embeddings(), device) as head:
            return head(hidden).float()

    def outside_tensors(self):
        for name, tensor in self.model.state_dict().items():
            if self.family.layer_of(name) is None:
                yield name, tensor


class StreamedLayers(ModelLayers):
    """A checkpoint directory read lazily: every file checked and every tensor's name and shape matched
    against the config first; weights read one layer at a time and dropped after."""

    def __init__(self, directory: str | Path, trust_remote_code: bool = False):
        self.directory = Path(directory)
        super().__init__(load_config(str(self.directory), trust_remote_code))
        self.stored = StoredTensors(self.directory)
        check_weights_match(self.config, {n: self.stored.shape(n) for n in self.stored.names()}, self.directory,
                            trust_remote_code)
        with init_empty_weights(include_buffers=False):  # weights on "meta", buffers (rotary) real
            self.skeleton = AutoModelForCausalLM.from_config(self.config, trust_remote_code=trust_remote_code)
        self.device = torch.device("cpu")
        self.dtype = self.stored.dtype(self.family.tensor_name(0, "down_proj"))  # what the pruned model is stored in
        generation = self.directory / "generation_config.json"
        self.generation_config = (GenerationConfig.from_pretrained(self.directory) if generation.is_file()
                                  else self.skeleton.generation_config)
        self.trust_remote_code = trust_remote_code

    def tokenizer(self):
        try:
            return AutoTokenizer.from_pretrained(self.directory, trust_remote_code=self.trust_remote_code)
        except (OSError, ValueError) as e:
            raise GPruneError(f"cannot load the tokenizer of {self.directory}: {first_line(e)}") from None

    def read(self, name: str, dtype: torch.dtype | None = COMPUTE_DTYPE) -> torch.Tensor:
        return self._finite(name, self.stored.read(name, dtype))

    def _read_rows(self, name: str, rows: torch.Tensor) -> torch.Tensor:
        return self._finite(name, self.stored.read_rows(name, rows, COMPUTE_DTYPE))

    def _finite(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        if not all_finite(tensor):
            raise GPruneError(f"{self.directory}: tensor {name} holds NaN or Inf values")
        return tensor

    def _materialize(self, module: nn.Module, prefix: str, device: torch.device) -> None:
        state = {k: self.read(prefix + k) for k in module.state_dict() if prefix + k in self.stored.files}
        module.load_state_dict(state, strict=False, assign=True)
        module.to(device)

    @contextlib.contextmanager
    def layer(self, i: int, device: torch.device):
        layer = copy.deepcopy(self.family.decoder_layers(self.skeleton)[i])  # empty: the skeleton stays so
        self._materialize(layer, f"{self.family.layers_path}.{i}.", device)
        try:
            yield layer
        finally:
            del layer

    def weight(self, i: int, role: str) -> torch.Tensor:
        return self.read(self.family.tensor_name(i, role))

    @contextlib.contextmanager
    def body(self, device: torch.device):
        body = self.skeleton.get_submodule(self.family.body_path)
        embedding = self.skeleton.get_input_embeddings()
        children = [(name, m) for name, m in body.named_children() if name != "layers" and m is not embedding]
        for name, module in children:
            self._materialize(module, f"{self.family.body_path}.{name}.", device)
        try:
            yield self.skeleton
        finally:
            for _, module in children:
                drop_weights(module)

    def embed(self, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
        # the embedding module on a table of only the rows these ids use (ids renumbered into it): the same
        # arithmetic as on the whole table, without an 8B model's 2 GB of it in float32
        module = self.skeleton.get_input_embeddings()
        name = weight_name(self.skeleton, module)
        used, local = torch.unique(ids, return_inverse=True)
        rows = self._read_rows(name, used)
        scratch = copy.deepcopy(module)
        scratch.weight = nn.Parameter(rows, requires_grad=False)
        return scratch.to(device)(local.to(device))

    def output_logits(self, hidden: torch.Tensor, device: torch.device) -> torch.Tensor:
        # a block of the vocabulary's rows at a time: an 8B model's output layer is 2 GB in float32
        name = weight_name(self.skeleton, self.skeleton.get_output_embeddings())
        if name not in self.stored.files:  # tied: the output layer is the input embedding
            name = weight_name(self.skeleton, self.skeleton.get_input_embeddings())
        vocab, width = self.stored.shape(name)
        hidden, step, logits = hidden.to(device), max(1, HEAD_BLOCK_BYTES // (COMPUTE_DTYPE.itemsize * width)), []
        for start in range(0, vocab, step):
            rows = self._read_rows(name, torch.arange(start, min(start + step, vocab)))
            logits.append(hidden @ rows.to(device).T)
        return torch.cat(logits, -1)

    def outside_tensors(self):
        for name in self.stored.names():
            if self.family.layer_of(name) is None:
                yield name, self.read(name, dtype=None)


@contextlib.contextmanager
def _visiting(module: nn.Module, device: torch.device):
    """`module` on `device` for the duration of the block, then back where it was."""
    home = model_device(module)
    module.to(device)
    try:
        yield module
    finally:
        module.to(home)


def weight_name(model: nn.Module, module: nn.Module) -> str:
    """The state-dict name of `module`'s weight within `model`."""
    return next(n for n, m in model.named_modules() if m is module) + ".weight"


def drop_weights(module: nn.Module) -> None:
    """Put `module`'s parameters back on "meta", keeping its buffers (rotary frequencies, embedding scales)."""
    for m in module.modules():
        for name, p in list(m.named_parameters(recurse=False)):
            setattr(m, name, nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False))


def model_layers(model_or_layers) -> ModelLayers:
    """`ModelLayers` as given, or of a model in memory."""
    return model_or_layers if isinstance(model_or_layers, ModelLayers) else InMemoryLayers(model_or_layers)


class _Recorder(nn.Module):
    """Stands in for decoder layer i while the body runs: records the keyword arguments the layer would
    be called with (and the hidden states entering layer 0) and passes the hidden states through."""

    def __init__(self, i: int, layer: nn.Module, calls: list):
        super().__init__()
        self.i, self.calls = i, calls
        if hasattr(layer, "attention_type"):  # the body picks each layer's mask by it
            self.attention_type = layer.attention_type

    def forward(self, *args, **kwargs):
        hidden = kwargs.pop("hidden_states", None)
        hidden = args[0] if hidden is None else hidden
        self.calls.append((self.i, hidden, kwargs))
        return hidden


@torch.no_grad()
def capture_layer_inputs(model, ids: torch.Tensor, batch_size: int, device: torch.device):
    """Per batch, (hidden states entering decoder layer 0, [keyword arguments of layer i for every i]):
    the attention mask and rotary embedding a layer gets depend on its kind (Gemma 3's local and global
    layers differ in both). `model`: a model in memory or `ModelLayers` (only the modules outside the
    decoder layers are loaded; the layers are not run)."""
    layers = model_layers(model)
    captured = []
    with layers.body(device) as causal_lm:
        body = causal_lm.get_submodule(layers.family.body_path)
        real, calls = body.layers, []
        body.layers = nn.ModuleList(_Recorder(i, layer, calls) for i, layer in enumerate(real))
        try:
            for batch in ids.split(batch_size):
                calls.clear()
                body(inputs_embeds=layers.embed(batch, device), use_cache=False)
                captured.append((calls[0][1], [kwargs for _, _, kwargs in calls]))
        finally:
            body.layers = real
    return captured


@torch.no_grad()
def layerwise_logits(model, ids: list[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """[len(ids), vocab] float32 logits of one sequence, computed with one decoder layer in memory at a
    time: what the whole model computes, for a checkpoint that does not fit in memory."""
    layers, device = model_layers(model), torch.device(device)
    [(hidden, kwargs)] = capture_layer_inputs(layers, torch.tensor([list(ids)]), 1, device)
    for i, layer in layers.each(device):
        out = layer(hidden, **kwargs[i])
        hidden = out[0] if isinstance(out, tuple) else out
    with layers.body(device) as causal_lm:
        hidden = causal_lm.get_submodule(layers.family.final_norm_path)(hidden)
    logits = layers.output_logits(hidden[0], device)
    cap = getattr(layers.config, "final_logit_softcapping", None)  # Gemma: applied by the causal LM's forward
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits.cpu()
