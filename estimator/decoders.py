"""Decoder families: the common Llama-shaped decoder as data (``DECODERS``), and the builders of families that
differ in kind (DeepSeek MLA with its sparse-attention indexer, gpt-oss, Llama 4's text model)."""

from __future__ import annotations

from dataclasses import dataclass

from estimator.errors import PlannerError
from estimator.inventory import (
    ABSORBED_MLA,
    DTYPE_BYTES,
    FP32_BYTES,
    VLLM_REFERENCE_VERSION,
    AttentionLayer,
    Config,
    Inventory,
    add_embeddings,
    attention_dims,
    gated_mlp,
    gqa_attention,
    layer_norms,
    routed_experts,
    tied_embeddings,
)

BF16_BYTES = DTYPE_BYTES["bfloat16"]

# How a family's model code picks its windowed layers when config.json has no layer_types (Decoder.windows):
#   config: every layer windowed when sliding_window is set (llama.py-style, cache_config.sliding_window);
#   qwen: none unless use_sliding_window, then the layers from max_window_layers on (qwen2.py, qwen3.py);
#   alternate: the even layers (gemma2.py, gpt_oss.py);  pattern: all but every sliding_window_pattern-th
#   layer (gemma3.py; the default is the config class's: 6 for Gemma 3, 4 for Cohere2).
WINDOW_RULES = ("config", "qwen", "alternate", "pattern")


def layer_windows(c: Config, n: int, rule: str, pattern_default: int = 6) -> list[str]:
    """Per-layer attention kind: 'full' or 'sliding', as vLLM's model code decides it (rule: WINDOW_RULES)."""
    layer_types = c.get("layer_types")
    window = c.get("sliding_window")
    if rule == "qwen" and not c.get("use_sliding_window", False):
        return ["full"] * n
    if layer_types:
        if len(layer_types) != n:
            raise PlannerError(f"config.json of {c.model_id} lists {len(layer_types)} layer_types for {n} layers "
                               "(fix the config.json)")
        return ["sliding" if t == "sliding_attention" and window else "full" for t in layer_types]
    if rule == "qwen":
        first = c.int("max_window_layers", n, minimum=0)
        return ["sliding" if window and i >= first else "full" for i in range(n)]
    if rule == "alternate":
        return ["sliding" if i % 2 == 0 else "full" for i in range(n)]
    if rule == "pattern":
        if not window:
            return ["full"] * n
        pattern = c.int("sliding_window_pattern", pattern_default)
        return ["full" if (i + 1) % pattern == 0 else "sliding" for i in range(n)]
    return ["sliding" if window else "full"] * n


def gqa_layers(c: Config, kinds: list[str], window_extra: int = 0) -> list[AttentionLayer]:
    """The KV layers of GQA attention; a windowed layer attends over sliding_window + window_extra tokens."""
    _, _, kv, hd = attention_dims(c)
    window = c.get("sliding_window")
    return [AttentionLayer(k, kv, hd, hd, window + window_extra if k == "sliding" else None) for k in kinds]


# --- families ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Experts:
    """Where a family's routed experts sit and what comes with them."""

    count: str  # the config key of the number of routed experts
    width: str = "moe_intermediate_size"  # the config key of one expert's intermediate size
    topk: str = "num_experts_per_tok"  # the config key of the experts each token runs through
    block: str = "mlp"  # the module that holds them: mlp | block_sparse_moe
    router: str = "gate"  # the router's name inside that module
    router_bias: bool = False  # a per-expert score-correction bias beside the router (GLM-4.5)
    router_bias_key: str | None = None  # ... or when this config key says so (MiniMax-M2: use_routing_bias)
    router_fp32: bool = False  # the router's weights in float32 (a GateLinear built with params_dtype float32)
    shared: str = "none"  # none | sized: one shared expert of shared_expert_intermediate_size with a one-wide
    #                       gate (Qwen2-MoE) | count: shared_count experts of the routed width (GLM-4.5) | mlp: one
    #                       ungated shared MLP of the routed width named shared_mlp (Hunyuan's MoE)
    shared_count: str = "n_shared_experts"  # shared="count": the config key of their number
    dense: str = "none"  # which layers keep a dense MLP: none | sparse_step (mlp_only_layers and
    #                      decoder_sparse_step, Qwen) | first_k (first_k_dense_replace, GLM-4.5) | span (ERNIE
    #                      4.5: experts from moe_layer_start_index to moe_layer_end_index, every moe_layer_interval)
    # Whether vLLM renormalizes the top-k weights: always | never | custom (a routing function of the model's own) |
    # config (norm_topk_prob, else renormalize_default: the transformers config class's default)
    renormalize: str = "always"
    renormalize_default: bool = False

    def routing(self, c: Config) -> str:
        """ModelArch.moe_routing for a checkpoint of this family."""
        if self.renormalize == "config":
            return topk_routing(c, self.renormalize_default)
        if self.renormalize == "never":
            return "plain"
        return "custom" if self.renormalize == "custom" else "renormalize"


def topk_routing(c: Config, default: bool) -> str:
    """ModelArch.moe_routing of a model whose vLLM code passes renormalize=config.norm_topk_prob: ``default`` is
    the transformers config class's value where config.json leaves the key out."""
    return "renormalize" if c.get("norm_topk_prob", default) else "plain"


@dataclass(frozen=True)
class Decoder:
    """A decoder family as data: Llama's layer (GQA attention with q/k/v/o projections, a gated MLP, an RMSNorm
    before each) and what this family does differently. A family of this shape is one entry in DECODERS."""

    qkv_bias: str = "config"  # config (bias_key) | always | never
    o_bias: str = "config"  # config | always | never
    bias_key: str = "attention_bias"
    bias_default: bool = False  # bias_key's value where config.json leaves it out (the config class's default)
    o_bias_key: str | None = None  # the config key that biases o_proj where it is not bias_key (Seed-OSS)
    mlp_bias_key: str = "mlp_bias"  # the config key that biases the dense MLPs (not the experts)
    mlp_bias: str = "config"  # config (mlp_bias_key; bias_key's default where the two are the same key) | always
    qk_norm: str = "none"  # none | head: one head wide, shared by all heads (Qwen3, Gemma 3, GLM-4.5) |
    #                        heads: every head its own, split with the heads over TP (Cohere, MiniMax-M2) |
    #                        all: one norm over all heads' width, replicated (OLMo 2 gathers q and k first)
    qk_norm_key: str | None = None  # the config key that switches the q/k norms on; None: always there
    norms: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm")
    norm_bias: bool = False  # LayerNorm with a bias in place of RMSNorm (Phi-3.5-MoE), final and q/k norms included
    lm_head_bias_key: str | None = None  # the config key that gives the LM head a bias (Phi-3.5-MoE)
    experts: Experts | None = None
    windows: str = "config"  # which layers are windowed without layer_types: one of WINDOW_RULES
    pattern_default: int = 6  # windows="pattern": sliding_window_pattern where config.json leaves it out
    window_extra: int = 0  # tokens a windowed layer attends over beyond sliding_window
    mlp: str = "gated"  # gated: gate, up and down projections | plain: up and down only (Nemotron's ReLU^2)
    # a learned activation's parameters per layer, in bfloat16 whatever the model dtype (Apertus' xIELU: alpha_p and
    # alpha_n, activation.py XIELU(dtype=torch.bfloat16))
    activation_params: int = 0


GEMMA_NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                "post_feedforward_layernorm")
BLOCK_SPARSE = dict(count="num_local_experts", width="intermediate_size", block="block_sparse_moe")

# family -> its decoder, as vLLM's model code builds it (vllm/model_executor/models/<family>.py)
DECODERS: dict[str, Decoder] = {
    "llama": Decoder(), "mistral": Decoder(), "granite": Decoder(), "phi3": Decoder(),
    # Gemma 1 and CodeGemma (gemma.py): Llama's layer without biases, GemmaRMSNorm's (1 + weight) is one vector too
    "gemma": Decoder(qkv_bias="never", o_bias="never"),
    "internlm2": Decoder(bias_key="bias"),  # fused wqkv and w1/w3 hold the same tensors as Llama's
    "qwen2": Decoder(qkv_bias="always", windows="qwen"),
    "qwen3": Decoder(qk_norm="head", windows="qwen"),
    "gemma2": Decoder(norms=GEMMA_NORMS, windows="alternate"),
    "gemma3": Decoder(qk_norm="head", norms=GEMMA_NORMS, windows="pattern"),
    "cohere": Decoder(qk_norm="heads", qk_norm_key="use_qk_norm", norms=("input_layernorm",)),  # parallel block
    # Cohere2 (Command R7B, Command A): Cohere's block with three windowed layers to one global (Cohere2Config's
    # default pattern), each window passed to vLLM as sliding_window + 1 (commandr.py: the training convention)
    "cohere2": Decoder(qk_norm="heads", qk_norm_key="use_qk_norm", norms=("input_layernorm",), windows="pattern",
                       pattern_default=4, window_extra=1),
    # OLMo 2: norms after attention and after the MLP, q/k norms over all heads' width, replicated (olmo2.py gathers
    # q and k over TP before them)
    "olmo2": Decoder(qk_norm="all", norms=("post_attention_layernorm", "post_feedforward_layernorm")),
    "nemotron": Decoder(mlp="plain", norm_bias=True),  # LayerNorm1P (weight and bias), ReLU^2 MLP
    # ChatGLM3 and GLM-4-9B-chat (chatglm.py), read through chatglm_config: o_proj and the MLP biased by
    # add_bias_linear
    "chatglm": Decoder(o_bias_key="add_bias_linear", mlp_bias_key="add_bias_linear"),
    # Apertus: Llama's attention with q/k norms one head wide, an up/down MLP through xIELU (apertus.py)
    "apertus": Decoder(qk_norm="head", mlp="plain", activation_params=2),
    # OLMoE: OLMo 2's q/k norms over all heads (gathered over TP first) in a pre-norm layer, 64 experts of
    # intermediate_size on every layer, top-k weights never renormalized whatever norm_topk_prob says (olmoe.py)
    "olmoe": Decoder(qkv_bias="never", o_bias="never", qk_norm="all",
                     experts=Experts("num_experts", width="intermediate_size", renormalize="never")),
    # EXAONE 4.0: OLMo 2's norms after attention and after the MLP, q/k norms one head wide, three windowed layers
    # to one global where layer_types leaves them to the pattern (exaone4.py)
    "exaone4": Decoder(qk_norm="head", norms=("post_attention_layernorm", "post_feedforward_layernorm"),
                       windows="pattern", pattern_default=4),
    "glm4": Decoder(o_bias="never", norms=("input_layernorm", "post_attention_layernorm", "post_self_attn_layernorm",
                                           "post_mlp_layernorm")),
    "mixtral": Decoder(qkv_bias="never", o_bias="never", experts=Experts(**BLOCK_SPARSE)),
    "granitemoe": Decoder(qkv_bias="never", o_bias="never", experts=Experts(**BLOCK_SPARSE, router="router.layer")),
    "phimoe": Decoder(norm_bias=True, lm_head_bias_key="lm_head_bias",
                      experts=Experts(**BLOCK_SPARSE, renormalize="custom")),
    "qwen3_moe": Decoder(o_bias="never", qk_norm="head", windows="qwen",
                         experts=Experts("num_experts", dense="sparse_step", renormalize="config")),
    "qwen2_moe": Decoder(qkv_bias="always", o_bias="never", windows="qwen",
                         experts=Experts("num_experts", shared="sized", dense="sparse_step", renormalize="config")),
    # MiniMax-M2: q/k norms over all heads, 256 routed experts with a routing bias, no shared expert; its gate and
    # GLM-4.5's are float32 (minimax_m2.py, glm4_moe.py: GateLinear(params_dtype=torch.float32))
    "minimax_m2": Decoder(qk_norm="heads", experts=Experts(**dict(BLOCK_SPARSE, router_bias_key="use_routing_bias",
                                                                  router_fp32=True))),
    # ERNIE 4.5: Llama's layer (vLLM builds the dense one as LlamaForCausalLM, which reads no bias key of ERNIE's);
    # the MoE one biases q/k/v (and the dense MLPs) when use_bias says so, keeps its gate and score-correction bias
    # in float32, and shares moe_num_shared_experts experts (ernie45.py, ernie45_moe.py)
    "ernie4_5": Decoder(qkv_bias="never", o_bias="never"),
    "ernie4_5_moe": Decoder(bias_key="use_bias", mlp_bias_key="use_bias", o_bias="never",
                            experts=Experts("moe_num_experts", topk="moe_k", router_bias=True, router_fp32=True,
                                            shared="count", shared_count="moe_num_shared_experts", dense="span")),
    # Served by vLLM's Transformers modeling backend (no model code of vLLM's own: TransformersForCausalLM builds
    # transformers' modules around vLLM's attention and linear layers): OLMo 3 is OLMo 2 with layer_types' windowed
    # layers; SmolLM3 is Llama's layer (every fourth layer without rotary embeddings); Seed-OSS biases q/k/v by
    # attention_bias and o_proj by attention_out_bias; Hunyuan's dense model has q/k norms one head wide.
    "olmo3": Decoder(qk_norm="all", norms=("post_attention_layernorm", "post_feedforward_layernorm")),
    "smollm3": Decoder(),
    "seed_oss": Decoder(o_bias_key="attention_out_bias"),
    "hunyuan_v1_dense": Decoder(qk_norm="head"),
    # Hunyuan's MoE (Hunyuan-A13B) as transformers 5.19 builds it: the dense model's attention, then on every layer
    # experts of intermediate_size beside one shared MLP of the same width, routed by a float32 gate.wg (an
    # nn.Linear built with dtype=torch.float32, which vLLM's backend keeps: it replaces only the experts)
    "hunyuan_v1_moe": Decoder(qk_norm="head", experts=Experts("num_experts", width="intermediate_size",
                                                              topk="moe_topk", router="gate.wg", router_fp32=True,
                                                              shared="mlp")),
    # Phi-1, 1.5 and 2: one LayerNorm before attention and the MLP side by side, q/k/v and the output projection
    # biased, a biased fc1/fc2 MLP, LayerNorms one head wide on q and k where qk_layernorm says so. The checkpoint's
    # LM head has a bias too, which vLLM's Transformers backend does not build (its ParallelLMHead has none), so it
    # is neither loaded nor counted
    "phi": Decoder(qkv_bias="always", o_bias="always", mlp_bias="always", qk_norm="head", qk_norm_key="qk_layernorm",
                   norms=("input_layernorm",), norm_bias=True, mlp="plain"),
    # GPT-NeoX (Pythia, GPT-NeoX-20B): a fused QKV and dense output biased by attention_bias (true where config.json
    # leaves it out), LayerNorms before attention and before the MLP, a biased dense_h_to_4h/dense_4h_to_h MLP
    "gpt_neox": Decoder(bias_default=True, mlp_bias="always", norm_bias=True, mlp="plain"),
    # StarCoder2: q/k/v/o and the c_fc/c_proj MLP biased by use_bias (true by default), LayerNorms, tied embeddings
    "starcoder2": Decoder(bias_key="use_bias", bias_default=True, mlp_bias_key="use_bias", norm_bias=True,
                          mlp="plain"),
    # Arcee (AFM-4.5B): Llama's attention over an up/down MLP through ReLU^2
    "arcee": Decoder(mlp="plain"),
    # GLM-4-9B in transformers' form (GlmForCausalLM): q/k/v biased by attention_bias (true by default), o_proj
    # never, a fused gate_up_proj as wide as gate and up
    "glm": Decoder(o_bias="never", bias_default=True),
    "glm4_moe": Decoder(o_bias="never", qk_norm="head", qk_norm_key="use_qk_norm",
                        experts=Experts("n_routed_experts", router_bias=True, shared="count", dense="first_k",
                                        renormalize="config", renormalize_default=True, router_fp32=True)),
}


def is_moe_layer(c: Config, e: Experts, i: int) -> bool:
    if e.dense == "sparse_step":
        return i not in set(c.get("mlp_only_layers") or []) and (i + 1) % c.int("decoder_sparse_step", 1) == 0
    if e.dense == "first_k":
        return i >= c.int("first_k_dense_replace", 0, minimum=0)
    if e.dense == "span":  # ernie45_moe.py Ernie4_5_MoeDecoderLayer
        last = c.int("moe_layer_end_index", c.int("num_hidden_layers") - 1, minimum=0)
        return (c.int(e.count, 0, minimum=0) > 0 and (i + 1) % c.int("moe_layer_interval", 1) == 0
                and c.int("moe_layer_start_index", 0, minimum=0) <= i <= last)
    return True


def moe_block(c: Config, inv: Inventory, e: Experts, i: int, hidden: int) -> None:
    experts, topk, width = c.int(e.count), c.int(e.topk), c.int(e.width)
    prefix = f"model.layers.{i}.{e.block}"
    inv.add(f"{prefix}.{e.router}", experts, hidden, "rep", "router", i, fixed_bytes=FP32_BYTES if e.router_fp32 else 0)
    if e.router_bias or (e.router_bias_key and c.flag(e.router_bias_key)):
        # the score-correction bias is float32 in every family that has one (glm4_moe.py, minimax_m2.py, ...)
        inv.add(f"{prefix}.{e.router}.e_score_correction_bias", experts, 1, "rep", "router", i,
                fixed_bytes=FP32_BYTES)
    routed_experts(inv, prefix, hidden, width, i, experts, topk)
    if e.shared == "sized":
        gated_mlp(inv, f"{prefix}.shared_expert", hidden, c.int("shared_expert_intermediate_size"), i)
        inv.add(f"{prefix}.shared_expert_gate", 1, hidden, "rep", "router", i)
    elif e.shared == "count" and c.int(e.shared_count, 0, minimum=0):
        gated_mlp(inv, f"{prefix}.shared_experts", hidden, width * c.int(e.shared_count), i)
    elif e.shared == "mlp":
        gated_mlp(inv, f"{prefix}.shared_mlp", hidden, width, i)


def decoder(c: Config, inv: Inventory, family: str):
    """Every family in DECODERS: dense (Llama, Qwen, Gemma, Cohere ...) and MoE (Mixtral, Qwen-MoE, GLM-4.5 ...)."""
    d = DECODERS[family]
    n = c.int("num_hidden_layers")
    hidden, heads, kv, hd = attention_dims(c)
    config_bias = c.flag(d.bias_key) if c.get(d.bias_key) is not None else d.bias_default
    qkv_bias = d.qkv_bias == "always" or (d.qkv_bias == "config" and config_bias)
    o_bias = d.o_bias == "always" or (d.o_bias == "config" and (c.flag(d.o_bias_key) if d.o_bias_key else config_bias))
    mlp_bias = d.mlp_bias == "always" or (config_bias if d.mlp_bias_key == d.bias_key else c.flag(d.mlp_bias_key))
    qk_norm = d.qk_norm if d.qk_norm_key is None or c.flag(d.qk_norm_key) else "none"
    for i in range(n):
        gqa_attention(inv, c, i, qkv_bias, o_bias, qk_norm=qk_norm == "head", norm_bias=d.norm_bias)
        if qk_norm in ("heads", "all"):  # over every head's width: split with the heads, or replicated
            inv.add(f"model.layers.{i}.self_attn.q_norm", heads * hd, 1, "col" if qk_norm == "heads" else "rep",
                    "norm", i)
            inv.add(f"model.layers.{i}.self_attn.k_norm", kv * hd, 1, "kv" if qk_norm == "heads" else "rep", "norm",
                    i)
        if d.experts is not None and is_moe_layer(c, d.experts, i):
            moe_block(c, inv, d.experts, i, hidden)
        elif d.mlp == "plain":
            inv.linear(f"model.layers.{i}.mlp.up_proj", hidden, c.int("intermediate_size"), "col", i, bias=mlp_bias)
            inv.linear(f"model.layers.{i}.mlp.down_proj", c.int("intermediate_size"), hidden, "row", i, bias=mlp_bias)
            if d.activation_params:
                inv.add(f"model.layers.{i}.mlp.act_fn", d.activation_params, 1, "rep", "norm", i,
                        fixed_bytes=BF16_BYTES)
        else:
            gated_mlp(inv, f"model.layers.{i}.mlp", hidden, c.int("intermediate_size"), i, bias=mlp_bias)
        for name in d.norms:
            inv.norm(f"model.layers.{i}.{name}", hidden, i, with_bias=d.norm_bias)
    vocab = c.int("vocab_size")
    add_embeddings(inv, vocab, hidden, tied_embeddings(c.raw, family), final_norm_bias=d.norm_bias)
    if d.lm_head_bias_key and c.flag(d.lm_head_bias_key):
        inv.add("lm_head.bias", vocab, 1, "vocab", "bias", place="last")
    extra = {}
    if d.experts is not None:
        extra = dict(num_experts=c.int(d.experts.count), experts_per_token=c.int(d.experts.topk),
                     moe_intermediate_size=c.int(d.experts.width), moe_routing=d.experts.routing(c))
    return gqa_layers(c, layer_windows(c, n, d.windows, d.pattern_default), d.window_extra), extra


def hunyuan_moe_config(raw: dict, model_id: str) -> dict:
    """Hunyuan MoE's config.json in the keys the decoder reads: HunYuanMoEV1Config lets num_experts and moe_topk be
    one number or a list with one per layer (Hunyuan-A13B ships lists); a list must hold one value, as the planner
    sizes every layer's experts alike. The keys of Tencent's own code that transformers' model ignores (experts of
    moe_intermediate_size, num_shared_expert shared MLPs, cross-layer attention) must describe what it builds
    instead: one shared MLP, experts of intermediate_size, every layer's own KV; else vLLM's Transformers backend
    could not load the checkpoint, and the plan is refused."""
    out = dict(raw)
    for key in ("num_experts", "moe_topk", "moe_intermediate_size", "num_shared_expert"):
        value = raw.get(key)
        if isinstance(value, list):
            if not value or len(set(map(repr, value))) != 1:
                raise PlannerError(f"config.json of {model_id} has {key}={value!r}; the planner sizes Hunyuan's "
                                   "MoE with one value for every layer (fix the config.json or choose another model)")
            out[key] = value[0]
    built = {"moe_intermediate_size": out.get("intermediate_size"), "num_shared_expert": 1, "use_cla": False}
    for key, value in built.items():
        if key in out and out[key] != value:
            raise PlannerError(f"config.json of {model_id} has {key}={raw[key]!r}, but transformers' HunYuanMoEV1 "
                               f"model, which vLLM {VLLM_REFERENCE_VERSION} serves it with, builds {key}={value!r}; the planner "
                               "cannot size this checkpoint (choose another model)")
    return out


# ChatGLM's rope (chatglm.py GLMAttention): a base of 10,000 x rope_ratio, half of each head rotating
CHATGLM_ROPE_BASE = 10000
CHATGLM_ROTARY_FRACTION = 0.5


def chatglm_config(raw: dict, model_id: str) -> dict:
    """ChatGLM3 and GLM-4-9B-chat's config.json (model_type chatglm, vLLM's ChatGLMConfig) in the keys the Llama
    decoder reads: num_layers, padded_vocab_size, ffn_hidden_size and seq_length under their common names, KV heads
    from multi_query_group_num under multi-query attention, the q/k/v biased by add_qkv_bias or add_bias_linear,
    o_proj and the MLP by add_bias_linear, and the rope vLLM builds (chatglm.py). A ChatGLM with LayerNorms or
    without its final norm is refused (the planner models the RMSNorm checkpoints only), and so is one whose
    config.json leaves tie_word_embeddings out, which vLLM 0.32 cannot build."""
    if raw.get("rmsnorm", True) is not True or raw.get("post_layer_norm", True) is not True:
        raise PlannerError(f"config.json of {model_id} has rmsnorm={raw.get('rmsnorm')!r}, post_layer_norm="
                           f"{raw.get('post_layer_norm')!r}; the planner models ChatGLM with RMSNorms and a final norm "
                           "(ChatGLM3, GLM-4-9B) only")
    if "tie_word_embeddings" not in raw:
        raise PlannerError(f"config.json of {model_id} does not say tie_word_embeddings, which vLLM's ChatGLM model "
                           "reads (it stops with an AttributeError without it): add \"tie_word_embeddings\": false "
                           "(ChatGLM checkpoints ship an output_layer of their own)")
    heads = raw.get("num_attention_heads", 32)
    kv = raw.get("multi_query_group_num", 1) if raw.get("multi_query_attention", False) else heads
    names = dict(num_hidden_layers=raw.get("num_layers", 28), vocab_size=raw.get("padded_vocab_size", 65024),
                 intermediate_size=raw.get("ffn_hidden_size", 13696), max_position_embeddings=raw.get("seq_length", 2048),
                 num_key_value_heads=kv, attention_bias=bool(raw.get("add_bias_linear") or raw.get("add_qkv_bias")),
                 rope_parameters={"rope_type": "default", "partial_rotary_factor": CHATGLM_ROTARY_FRACTION,
                                  "rope_theta": CHATGLM_ROPE_BASE * float(raw.get("rope_ratio", 1.0))})
    return dict(raw, **names)


# MiMo-V2's router weights as vLLM builds them where config.json names no moe_router_dtype (mimo_v2.py MiMoV2MoE)
MIMO_ROUTER_DTYPE = "float32"


def mimo_v2(c: Config, inv: Inventory, family: str):
    """MiMo-V2-Flash (mimo_v2.py MiMoV2FlashForCausalLM), read from the keys vLLM reads: hybrid_layer_pattern puts a
    windowed layer (1) or a global one (0) on each layer, each type with heads, KV heads and key and value head sizes
    of its own (swa_* for the windowed ones, whose window is sliding_window_size), and a learned attention sink per
    head on the windowed layers where add_swa_attention_sink_bias says so; moe_layer_freq puts routed experts (a
    float32 router unless moe_router_dtype says otherwise, a float32 score-correction bias, sigmoid scores) or a
    dense MLP on each layer."""
    n, hidden = c.int("num_hidden_layers"), c.int("hidden_size")
    pattern, moe = c.get("hybrid_layer_pattern"), c.get("moe_layer_freq")
    for key, value in (("hybrid_layer_pattern", pattern), ("moe_layer_freq", moe)):
        if not isinstance(value, list) or len(value) != n or any(v not in (0, 1) for v in value):
            raise PlannerError(f"config.json of {c.model_id} has {key}={value!r}; expected a 0 or 1 for each of its "
                               f"{n} layers (fix the config.json)")
    router_dtype = c.get("moe_router_dtype") or MIMO_ROUTER_DTYPE
    if router_dtype not in DTYPE_BYTES:
        raise PlannerError(f"config.json of {c.model_id} has moe_router_dtype={router_dtype!r}; expected one of "
                           f"{', '.join(DTYPE_BYTES)} (fix the config.json)")
    experts, topk, width = c.int("n_routed_experts"), c.int("num_experts_per_tok"), c.int("moe_intermediate_size")
    sinks, bias = c.flag("add_swa_attention_sink_bias"), c.flag("attention_bias")
    attn = []
    for i in range(n):
        swa = pattern[i] == 1
        prefix = "swa_" if swa else ""
        heads, kv = c.int(prefix + "num_attention_heads"), c.int(prefix + "num_key_value_heads")
        hd = c.int(prefix + "head_dim")
        vd = c.int(prefix + "v_head_dim") if c.get(prefix + "v_head_dim") else hd
        p = f"model.layers.{i}.self_attn"
        inv.linear(f"{p}.q_proj", hidden, heads * hd, "col", i, bias=bias)
        inv.linear(f"{p}.k_proj", hidden, kv * hd, "kv", i, bias=bias)
        inv.linear(f"{p}.v_proj", hidden, kv * vd, "kv", i, bias=bias)
        inv.linear(f"{p}.o_proj", heads * vd, hidden, "row", i)
        if swa and sinks:
            inv.add(f"{p}.attention_sink_bias", heads, 1, "col", "norm", i)
        attn.append(AttentionLayer("sliding", kv, hd, vd, c.int("sliding_window_size")) if swa
                    else AttentionLayer("full", kv, hd, vd))
        if moe[i]:
            inv.add(f"model.layers.{i}.mlp.gate", experts, hidden, "rep", "router", i,
                    fixed_bytes=DTYPE_BYTES[router_dtype])
            inv.add(f"model.layers.{i}.mlp.gate.e_score_correction_bias", experts, 1, "rep", "router", i,
                    fixed_bytes=FP32_BYTES)
            routed_experts(inv, f"model.layers.{i}.mlp", hidden, width, i, experts, topk)
        else:
            gated_mlp(inv, f"model.layers.{i}.mlp", hidden, c.int("intermediate_size"), i)
        layer_norms(inv, i, hidden)
    add_embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    return attn, dict(num_experts=experts, experts_per_token=topk, moe_intermediate_size=width,
                      moe_routing=topk_routing(c, True), head_dim=c.int("head_dim"))


def mla_attention(c: Config, inv: Inventory, i: int, sparse: dict | None = None) -> None:
    """Layer i's multi-head latent attention (deepseek_v2.py DeepseekV2MLAAttention): the query through a
    low-rank q_a/q_b pair (q_lora_rank) or one q_proj, the replicated KV latent projection and its norm, the
    up-projection to every head's keys and values and the output projection; a sparse model's indexer."""
    hidden, heads, q_lora = c.int("hidden_size"), c.int("num_attention_heads"), c.get("q_lora_rank")
    kv_lora, nope, rope, v = (c.int("kv_lora_rank"), c.int("qk_nope_head_dim"), c.int("qk_rope_head_dim"),
                              c.int("v_head_dim"))
    p = f"model.layers.{i}.self_attn"
    if q_lora:
        inv.linear(f"{p}.q_a_proj", hidden, q_lora, "rep", i)
        inv.norm(f"{p}.q_a_layernorm", q_lora, i)
        inv.linear(f"{p}.q_b_proj", q_lora, heads * (nope + rope), "col", i)
    else:
        inv.linear(f"{p}.q_proj", hidden, heads * (nope + rope), "col", i)
    if sparse:
        _indexer(inv, f"{p}.indexer", hidden, q_lora or hidden, sparse, i)
    inv.linear(f"{p}.kv_a_proj_with_mqa", hidden, kv_lora + rope, "rep", i)
    inv.norm(f"{p}.kv_a_layernorm", kv_lora, i)
    inv.linear(f"{p}.kv_b_proj", kv_lora, heads * (nope + v), "col", i)
    inv.linear(f"{p}.o_proj", heads * v, hidden, "row", i)
    # vLLM's MLA splits kv_b_proj into W_UK_T and W_UV (absorbed decode path), in the model dtype; the decode
    # reads them (memory.held: a copy of their own only when kv_b_proj is quantized).
    inv.add(p + ABSORBED_MLA, heads * (nope + v), kv_lora, "col", "derived", i)


def mla_layer(c: Config, sparse: dict | None = None) -> AttentionLayer:
    """The KV cache of an MLA layer: the latent and the rotary key, one "head" shared by every query head (and a
    sparse model's indexer keys)."""
    kv_lora, rope = c.int("kv_lora_rank"), c.int("qk_rope_head_dim")
    indexer_bytes = sparse["head_dim"] + sparse["head_dim"] // INDEXER_QUANT_BLOCK * 4 if sparse else 0
    return AttentionLayer("mla", 1, kv_lora + rope, 0, latent_value_width=kv_lora, indexer_bytes=indexer_bytes,
                          indexer_width=sparse["heads"] * sparse["head_dim"] if sparse else 0)


def deepseek(c: Config, inv: Inventory, family: str):
    """DeepSeek-V2/V3: multi-head latent attention and MoE with shared experts."""
    n = c.int("num_hidden_layers")
    hidden = c.int("hidden_size")
    nope, rope, v = c.int("qk_nope_head_dim"), c.int("qk_rope_head_dim"), c.int("v_head_dim")
    experts, topk, moe_inter = c.int("n_routed_experts"), c.int("num_experts_per_tok"), c.int("moe_intermediate_size")
    shared = c.int("n_shared_experts", 0, minimum=0)
    first_dense, freq = c.int("first_k_dense_replace", 0, minimum=0), c.int("moe_layer_freq", 1)
    sparse = _sparse_indexer(c, n)
    for i in range(n):
        mla_attention(c, inv, i, sparse)
        if i >= first_dense and i % freq == 0:
            # GLM's MoE block (glm4_moe.py Glm4MoE, which glm4_moe_lite.py uses) keeps its gate in float32 and always
            # has a score-correction bias; DeepSeek's gate is in the model dtype, with the bias under noaux_tc
            # routing (deepseek_v2.py); the bias is float32 in both
            glm = c.get("model_type") == "glm4_moe_lite"
            inv.add(f"model.layers.{i}.mlp.gate", experts, hidden, "rep", "router", i,
                    fixed_bytes=FP32_BYTES if glm else 0)
            if c.get("topk_method") == "noaux_tc" or glm:
                inv.add(f"model.layers.{i}.mlp.gate.e_score_correction_bias", experts, 1, "rep", "router", i,
                        fixed_bytes=FP32_BYTES)
            routed_experts(inv, f"model.layers.{i}.mlp", hidden, moe_inter, i, experts, topk)
            if shared:
                gated_mlp(inv, f"model.layers.{i}.mlp.shared_experts", hidden, moe_inter * shared, i)
        else:
            gated_mlp(inv, f"model.layers.{i}.mlp", hidden, c.int("intermediate_size"), i)
        layer_norms(inv, i, hidden)
    add_embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    attn = [mla_layer(c, sparse)] * n
    # deepseek_v2.py: renormalize=config.norm_topk_prob, whose default is the config class's: DeepseekV2Config's
    # false, DeepseekV3Config's (and the V3-derived classes') true
    routing = topk_routing(c, c.get("model_type") != "deepseek_v2")
    return attn, dict(num_experts=experts, experts_per_token=topk, moe_intermediate_size=moe_inter, is_mla=True,
                      mla_kv_up_dim=nope + v,
                      moe_routing=routing,
                      head_dim=nope + rope, index_topk=sparse["topk"] if sparse else 0)


# The indexer's K cache quantizes index_head_dim values to fp8 in blocks of this many, one fp32 scale each
# (deepseek_v32/attention.py DeepseekV32Indexer.quant_block_size).
INDEXER_QUANT_BLOCK = 128


def _sparse_indexer(c: Config, n: int) -> dict | None:
    """DeepSeek Sparse Attention's lightning indexer, when config.json names one (index_topk, as vLLM decides
    is_v32): its heads, head size and top-k. vLLM skips the indexer on some layers when index_topk_freq or
    index_topk_pattern say so; those layers' caches form groups of their own, which the planner does not model."""
    if c.get("index_topk") is None:
        return None
    freq, pattern = c.get("index_topk_freq", 1), c.get("index_topk_pattern")
    # the pattern is one letter per layer, a string or a list; S skips the indexer (anything else: not understood)
    skipping = pattern is not None and (not isinstance(pattern, (str, list)) or "S" in list(pattern)[:n])
    if freq != 1 or skipping:
        raise PlannerError(f"config.json of {c.model_id} skips the sparse-attention indexer on some layers "
                           f"(index_topk_freq={freq!r}, index_topk_pattern={pattern!r}); the planner models DSA "
                           "checkpoints with an indexer on every layer only")
    return dict(heads=c.int("index_n_heads"), head_dim=c.int("index_head_dim"), topk=c.int("index_topk"))


def _indexer(inv: Inventory, p: str, hidden: int, q_lora: int, sparse: dict, i: int) -> None:
    """One layer's lightning indexer (deepseek_v32/attention.py DeepseekV32Indexer): a replicated query
    projection from the query latent (quantized with the model), and the key and head-weight projections, which
    vLLM fuses into one GEMM kept in the model dtype (quant_config=None), with a LayerNorm on the key."""
    heads, head_dim = sparse["heads"], sparse["head_dim"]
    inv.linear(f"{p}.wq_b", q_lora, heads * head_dim, "rep", i)
    inv.linear(f"{p}.wk_weights_proj", hidden, head_dim + heads, "rep", i, kind="unquantized")
    inv.norm(f"{p}.k_norm", head_dim, i, with_bias=True)


def gpt_oss(c: Config, inv: Inventory, family: str):
    n = c.int("num_hidden_layers")
    hidden, _, _, _ = attention_dims(c)
    inter, experts = c.int("intermediate_size"), c.int("num_local_experts")
    topk = c.int("num_experts_per_tok", c.get("experts_per_token"))
    for i in range(n):
        gqa_attention(inv, c, i, True, True, False, sinks=True)
        inv.linear(f"model.layers.{i}.mlp.router", hidden, experts, "rep", i, bias=True, kind="router")
        routed_experts(inv, f"model.layers.{i}.mlp", hidden, inter, i, experts, topk, bias=True)
        layer_norms(inv, i, hidden)
    add_embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    return gqa_layers(c, layer_windows(c, n, "alternate")), dict(num_experts=experts, experts_per_token=topk,
                                                               moe_intermediate_size=inter,
                                                               moe_activation="swigluoai")  # gpt_oss.py


def llama4_text(c: Config, inv: Inventory, family: str):
    n = c.int("num_hidden_layers")
    hidden, _, kv, hd = attention_dims(c)
    moe_inter, dense_inter = c.int("intermediate_size"), c.int("intermediate_size_mlp")
    experts, topk = c.int("num_local_experts"), c.int("num_experts_per_tok")
    step = c.int("interleave_moe_layer_step", 1)
    for i in range(n):
        gqa_attention(inv, c, i, bool(c.get("attention_bias", False)), False, False)  # qk norm is parameter-free
        p = f"language_model.model.layers.{i}.feed_forward"
        if (i + 1) % step == 0:
            inv.add(f"{p}.router", experts, hidden, "rep", "router", i)
            routed_experts(inv, p, hidden, moe_inter, i, experts, topk)
            gated_mlp(inv, f"{p}.shared_expert", hidden, moe_inter, i)
        else:
            gated_mlp(inv, p, hidden, dense_inter, i)
        layer_norms(inv, i, hidden)
    add_embeddings(inv, c.int("vocab_size"), hidden, tied_embeddings(c.raw, family))
    chunk = c.get("attention_chunk_size")
    no_rope = c.get("no_rope_layers") or [int((i + 1) % 4 != 0) for i in range(n)]
    attn = [AttentionLayer("chunked", kv, hd, hd, chunk) if chunk and no_rope[i] else AttentionLayer("full", kv, hd, hd)
            for i in range(n)]
    return attn, dict(num_experts=experts, experts_per_token=topk, moe_intermediate_size=moe_inter)
