"""OPT (vLLM's opt.py OPTForCausalLM): the GPT-era decoder facebook/opt-125m made every vLLM quick start's model.
A learned position table in place of rotary embeddings, LayerNorms with biases, biased projections and a plain
fc1/fc2 MLP; where word_embed_proj_dim differs from hidden_size (opt-350m), the embeddings are that narrower
width with two replicated projections into and out of the decoder's."""

from __future__ import annotations

from estimator.decoders import gqa_layers
from estimator.errors import PlannerError
from estimator.inventory import Config, Inventory, tied_embeddings

# OPTLearnedPositionalEmbedding: position ids are offset by 2, so the table holds max_position_embeddings + 2 rows
POSITION_OFFSET = 2


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
        p = f"model.layers.{i}"  # (the inventory's one naming of layers; vLLM: model.decoder.layers)
        inv.linear(f"{p}.self_attn.q_proj", hidden, hidden, "col", i, bias=bias)
        inv.linear(f"{p}.self_attn.k_proj", hidden, hidden, "kv", i, bias=bias)
        inv.linear(f"{p}.self_attn.v_proj", hidden, hidden, "kv", i, bias=bias)
        inv.linear(f"{p}.self_attn.out_proj", hidden, hidden, "row", i, bias=bias)
        inv.linear(f"{p}.fc1", hidden, ffn, "col", i, bias=bias)
        inv.linear(f"{p}.fc2", ffn, hidden, "row", i, bias=bias)
        if affine:
            inv.norm(f"{p}.self_attn_layer_norm", hidden, i, with_bias=True)
            inv.norm(f"{p}.final_layer_norm", hidden, i, with_bias=True)
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
