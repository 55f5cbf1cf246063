"""Run inside .venv-optimum (transformers 4.x + optimum-onnx), not the project's venv: load an ONNX
folder with optimum's ORTModelForCausalLM and its tokenizer with transformers 4.x's AutoTokenizer,
generate greedily, print {"prompt_ids": [...], "tokens": [...]} as JSON.

    .venv-optimum/bin/python tests/optimum_generate.py ONNX_DIR PROMPT NEW_TOKENS [--stock]

optimum-onnx 0.1.0 sizes the empty KV cache of prefill as hidden_size // num_attention_heads for
Llama (optimum/onnxruntime/modeling_decoder.py, ORTModelForCausalLM.__init__) and ignores config.head_dim,
which is wrong once heads are pruned. The workaround (the default; --stock runs optimum as it is):
set `embed_size_per_head` to config.head_dim after loading."""

import json
import sys

import torch
from optimum.onnxruntime import ORTModelForCausalLM
from transformers import AutoTokenizer

folder, prompt, new_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(folder)
model = ORTModelForCausalLM.from_pretrained(folder, use_cache=True, use_io_binding=False)
if "--stock" not in sys.argv:
    model.embed_size_per_head = model.config.head_dim
ids = torch.tensor([tokenizer(prompt)["input_ids"]])
out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False)
print(json.dumps({"prompt_ids": ids[0].tolist(), "tokens": out[0, ids.shape[1]:].tolist()}))
