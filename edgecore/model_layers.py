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
from edgecore.loading import check_weights_match, load_config
from edgecore.safetensors_io import StoredTensors

COMPUTE_DTYPE = torch.float32  # pruning's arithmetic, whatever the checkpoint stores


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
        layer = self.family.decoder_layers(self.model)[i]
        home = model_device(layer)
        layer.to(device)
        try:
            yield layer
        finally:
            layer.to(home)

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
        module = self.model.get_input_embeddings()
        home = model_device(module)
        module.to(device)
        try:
            return module(ids.to(device))
        finally:
            module.to(home)

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

    def _read(self, name: str, dtype: torch.dtype | None = COMPUTE_DTYPE) -> torch.Tensor:
        tensor = self.stored.read(name, dtype)
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise GPruneError(f"{self.directory}: tensor {name} holds NaN or Inf values")
        return tensor

    def _materialize(self, module: nn.Module, prefix: str, device: torch.device) -> None:
        state = {k: self._read(prefix + k) for k in module.state_dict() if prefix + k in self.stored.files}
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
        return self._read(self.family.tensor_name(i, role))

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
        name = next(n for n, m in self.skeleton.named_modules() if m is module) + ".weight"
        used, local = torch.unique(ids, return_inverse=True)
        rows = self.stored.read_rows(name, used, COMPUTE_DTYPE)
        if not torch.isfinite(rows).all():
            raise GPruneError(f"{self.directory}: tensor {name} holds NaN or Inf values")
        scratch = copy.deepcopy(module)
        scratch.weight = nn.Parameter(rows, requires_grad=False)
        return scratch.to(device)(local.to(device))

    def outside_tensors(self):
        for name in self.stored.names():
            if self.family.layer_of(name) is None:
                yield name, self._read(name, dtype=None)


def drop_weights(module: nn.Module) -> None:
    """Put `module`'s parameters back on "meta", keeping its buffers (rotary frequencies, embedding scales)."""
    for m in module.modules():
        for name, p in list(m.named_parameters(recurse=False)):
            setattr(m, name, nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False))


def model_layers(model_or_layers) -> ModelLayers:
    """`ModelLayers` as given, or of a model in memory."""
    return model_or_layers if isinstance(model_or_layers, ModelLayers) else InMemoryLayers(model_or_layers)
