"""Decoders with learned position tables (no rotary embeddings), LayerNorms with biases, biased projections and a
plain MLP. OPT (vLLM's opt.py OPTForCausalLM), facebook/opt-125m being every vLLM quick start's model: where
word_embed_proj_dim differs from hidden_size (opt-350m), the embeddings are that narrower width with two replicated
projections into and out of the decoder's. GPT-2 (gpt2.py GPT2LMHeadModel), under its own key names."""

from __future__ import annotations

from estimator.decoders import gqa_layers
from estimator.errors import PlannerError
from estimator.inventory import Config, Inventory, tied_embeddings

# OPTLearnedPositionalEmbedding: position ids are offset by 2, so the table holds max_position_embeddings + 2 rows
POSITION_OFFSET = 2


# a block's projections (q, k, v, attention output, MLP in, MLP out) and LayerNorms, by the model's names
OPT_NAMES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2")
OPT_NORMS = ("self_attn_layer_norm", "final_layer_norm")
GPT2_NAMES = ("attn.c_attn.q", "attn.c_attn.k", "attn.c_attn.v", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
GPT2_NORMS = ("ln_1", "ln_2")


def _block(inv: Inventory, i: int, hidden: int, mlp: int, bias: bool, names: tuple[str, ...],
           norms: tuple[str, ...]) -> None:
    """Decoder layer i (the inventory's one naming of layers, model.layers.i): multi-head attention as wide as the
    model, a plain MLP ``mlp`` wide, every projection biased where ``bias`` says, LayerNorms with biases."""
    q, k, v, out, up, down = names
    p = f"model.layers.{i}"
    for name, shard in ((q, "col"), (k, "kv"), (v, "kv")):
        inv.linear(f"{p}.{name}", hidden, hidden, shard, i, bias=bias)
    inv.linear(f"{p}.{out}", hidden, hidden, "row", i, bias=bias)
    inv.linear(f"{p}.{up}", hidden, mlp, "col", i, bias=bias)
    inv.linear(f"{p}.{down}", mlp, hidden, "row", i, bias=bias)
    for name in norms:
        inv.norm(f"{p}.{name}", hidden, i, with_bias=True)


def opt(c: Config, inv: Inventory, family: str):
    """Every tensor OPTForCausalLM builds. OPTDecoder builds its embeddings, position table, projections and final
    LayerNorm on every pipeline stage (not only the first or last), and ParallelLMHead likewise. The final
    LayerNorm exists only where the layers norm before attention (do_layer_norm_before, OPTConfig's default true);
    LayerNorms have no weights at all where layer_norm_elementwise_affine is false."""
    n, hidden, heads = c.int("num_hidden_layers"), c.int("hidden_size"), c.int("num_attention_heads")
    ffn, vocab = c.int("ffn_dim"), c.int("vocab_size")
    word = c.int("word_embed_proj_dim", hidden)
    if hidden % heads:
        raise PlannerError(f"config.json of {c.model_id} has hidden_size={hidden} for {heads} attention heads; OPT's "
                           "head size is hidden_size / num_attention_heads, so it must divide (fix the config.json)")
    bias = c.get("enable_bias", True) is not False
    affine = c.get("layer_norm_elementwise_affine", True) is not False
    norm_before = c.get("do_layer_norm_before", True) is not False
    for i in range(n):
        _block(inv, i, hidden, ffn, bias, OPT_NAMES, OPT_NORMS if affine else ())
    inv.add("model.embed_tokens", vocab, word, "vocab", "embedding", place="every")
    inv.add("model.decoder.embed_positions", c.int("max_position_embeddings") + POSITION_OFFSET, hidden, "rep",
            "embedding", place="every")
    if word != hidden:
        inv.add("model.decoder.project_in", hidden, word, "rep", "linear", place="every")
        inv.add("model.decoder.project_out", word, hidden, "rep", "linear", place="every")
    if norm_before and affine and not c.get("_remove_final_layer_norm", False):
        inv.norm("model.decoder.final_layer_norm", hidden, place="every", with_bias=True)
    if not tied_embeddings(c.raw, family):
        inv.add("lm_head", vocab, word, "vocab", "embedding", place="every")
    return gqa_layers(c, ["full"] * n), dict(mlp_width=ffn)


# GPT2Config's names for the common keys (its attribute_map) and its defaults where config.json leaves them out
GPT2_KEYS = {"n_embd": "hidden_size", "n_layer": "num_hidden_layers", "n_head": "num_attention_heads",
             "n_positions": "max_position_embeddings"}
GPT2_DEFAULTS = dict(vocab_size=50257, max_position_embeddings=1024, hidden_size=768, num_hidden_layers=12,
                     num_attention_heads=12)


def gpt2_config(raw: dict) -> dict:
    """A GPT-2 config.json under the common names (n_embd as hidden_size ...), GPT2Config's defaults filled in."""
    named = {GPT2_KEYS.get(k, k): v for k, v in raw.items()}
    return {**GPT2_DEFAULTS, **named}


def gpt2(c: Config, inv: Inventory, family: str):
    """GPT2LMHeadModel (vLLM's gpt2.py): biased fused QKV and output projections, a biased c_fc/c_proj MLP n_inner
    wide (4 x the width where unset), LayerNorms with biases, and a learned position table; GPT2Model builds its
    embeddings, position table and final LayerNorm on every pipeline stage. The LM head is tied to the embeddings
    (GPT2Config's default)."""
    n, hidden, heads = c.int("num_hidden_layers"), c.int("hidden_size"), c.int("num_attention_heads")
    inner = c.int("n_inner") if c.get("n_inner") is not None else 4 * hidden  # (null in gpt2's config.json)
    if hidden % heads:
        raise PlannerError(f"config.json of {c.model_id} has n_embd={hidden} for {heads} attention heads; GPT-2's "
                           "head size is n_embd / n_head, so it must divide (fix the config.json)")
    vocab = c.int("vocab_size")
    for i in range(n):
        _block(inv, i, hidden, inner, True, GPT2_NAMES, GPT2_NORMS)
    inv.add("model.embed_tokens", vocab, hidden, "vocab", "embedding", place="every")
    inv.add("model.wpe", c.int("max_position_embeddings"), hidden, "rep", "embedding", place="every")
    inv.norm("model.ln_f", hidden, place="every", with_bias=True)
    if not tied_embeddings(c.raw, family):
        inv.add("lm_head", vocab, hidden, "vocab", "embedding", place="every")  # built on every stage too
    return gqa_layers(c, ["full"] * n), dict(mlp_width=inner)
