"""DeepSeek-V4 (vllm/models/deepseek_v4, DeepseekV4ForCausalLM) as vLLM 0.32 builds and caches it.

Each layer keeps a sliding-window cache of its last sliding_window tokens; a layer whose compress_ratios entry is 4
(CSA) or 128 (HCA) also keeps one compressed entry per 4 or 128 tokens, its compressor's running state, and on CSA
layers a lightning indexer's compressed keys with their own compressor. Every cache stores DeepSeek's fp8_ds_mla
entries (448 NoPE bytes in fp8, 64 RoPE dims in bf16, 8 scale bytes) in pages padded to 576 bytes; the compressor
states are float32. vLLM packs caches of different page sizes into one block per block id (a block-outermost
layout, which the V4 indexer backend asks for) and groups them as kv_cache_utils._get_packed_kv_cache_groups does;
kv_layout reproduces that, and what a request of max_model_len holds in each group.

The weights: manifold-constrained hyper-connections (float32 mixing tables per layer and before the head), a
low-rank query, one shared 512-wide KV head, a grouped low-rank output projection, attention sinks, the
compressors and indexers (replicated), and a MoE whose first num_hash_layers layers route by a token-id table.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from itertools import groupby

from estimator.errors import PlannerError
from estimator.inventory import (
    FP8_DS_MLA_ENTRY_BYTES,
    FP32_BYTES,
    AttentionLayer,
    Config,
    Inventory,
    add_embeddings,
    routed_experts,
)
from estimator.quantization import QuantScheme
from estimator.xp import ceil, maximum, minimum

CSA, HCA = 4, 128  # the compress ratios vLLM builds (compressor.py asserts compress_ratio in [4, 128])
# attention.py DeepseekV4Attention.get_kv_cache_spec: entries of FP8_DS_MLA_ENTRY_BYTES in pages padded to 576 bytes
# (FlashMLA's packing), the layout every default backend of V4 uses
FP8_DS_MLA_ALIGNMENT = 576
FP8_DS_MLA_HEAD_DIM, FP8_DS_MLA_ROPE_DIM = 512, 64  # the widths that entry packs
BLOCK_SIZE = 256  # sparse_mla.py DeepseekV4 backends: the only kernel block size
SWA_BLOCK_SIZE = 64  # sparse_swa.py DeepseekV4SWACache's block size
COMPRESSOR_BLOCK_SIZE = {CSA: 4, HCA: 8}  # compressor.py CompressorStateCache
INDEXER_SCALE_GROUP = 128  # one float32 scale per 128 fp8 values of an indexer key (attention.py)
HASH_INDEX_BYTES = 4  # the hash layers' tid2eid table is int32 (cpu/model.py, nvidia/model.py)


def compress_ratios(c: Config, n: int) -> list[int]:
    """Each layer's compress ratio: compress_ratios as vLLM reads it (one entry per layer, MTP layers' after them;
    0 and 1 mean the sliding window only). vLLM 0.32's model reads nothing else (attention.py indexes
    config.compress_ratios), so a config.json with transformers' layer_types alone is refused."""
    raw = c.get("compress_ratios")
    if not isinstance(raw, list) or len(raw) < n:
        raise PlannerError(f"config.json of {c.model_id} has no compress_ratios with one entry per layer "
                           f"({n}); vLLM's DeepSeek-V4 reads it (fix the config.json)")
    bad = sorted({r for r in raw[:n] if isinstance(r, bool) or not isinstance(r, int) or max(1, r) not in (1, CSA, HCA)},
                 key=str)
    if bad:
        raise PlannerError(f"config.json of {c.model_id} has compress ratios {bad}; vLLM's DeepSeek-V4 builds 0, 4 "
                           "and 128 only (fix the config.json)")
    return [max(1, r) for r in raw[:n]]


def indexer_entry_bytes(index_head_dim: int) -> int:
    """One indexer key: index_head_dim fp8 values and a float32 scale per 128 of them (DeepseekV4IndexerCache)."""
    return index_head_dim + math.ceil(index_head_dim / INDEXER_SCALE_GROUP) * FP32_BYTES


def deepseek_v4(c: Config, inv: Inventory, family: str):
    """The tensors of DeepseekV4ForCausalLM (cpu/model.py and nvidia/model.py build the same parameters)."""
    n = c.int("num_hidden_layers")
    ratios = compress_ratios(c, n)
    hidden, heads, head_dim = c.int("hidden_size"), c.int("num_attention_heads"), c.int("head_dim")
    rope = c.int("qk_rope_head_dim", int(head_dim * float(c.get("partial_rotary_factor") or 64 / 512)))
    if (head_dim, rope) != (FP8_DS_MLA_HEAD_DIM, FP8_DS_MLA_ROPE_DIM) or c.int("num_key_value_heads", 1) != 1:
        raise PlannerError(f"config.json of {c.model_id} has head_dim {head_dim}, qk_rope_head_dim {rope} and "
                           f"{c.get('num_key_value_heads')} KV heads; vLLM's DeepSeek-V4 caches one 512-wide head "
                           "with 64 rotary dims (its fp8_ds_mla entry), which the planner sizes (fix the config.json)")
    q_lora, o_groups, o_lora = c.int("q_lora_rank"), c.int("o_groups"), c.int("o_lora_rank")
    hc = c.int("hc_mult")
    index_heads, index_dim = c.int("index_n_heads"), c.int("index_head_dim")
    experts, topk, width = c.int("n_routed_experts"), c.int("num_experts_per_tok"), c.int("moe_intermediate_size")
    shared = c.int("n_shared_experts", 0, minimum=0)
    hash_layers = c.int("num_hash_layers", 0, minimum=0)
    vocab = c.int("vocab_size")
    if heads % o_groups:
        raise PlannerError(f"config.json of {c.model_id} has {heads} heads in {o_groups} o_groups; fix the config.json")
    mix, hc_dim = (2 + hc) * hc, hc * hidden  # cpu/model.py DeepseekV4DecoderLayer: mHC's mixing tables
    attn = []
    for i in range(n):
        p, r = f"model.layers.{i}", ratios[i]
        for part in ("attn", "ffn"):  # float32, replicated
            inv.add(f"{p}.hc_{part}_fn", mix, hc_dim, "rep", "norm", i, fixed_bytes=FP32_BYTES)
            inv.add(f"{p}.hc_{part}_base+scale", mix + 3, 1, "rep", "norm", i, fixed_bytes=FP32_BYTES)
        a = f"{p}.attn"
        inv.add(f"{a}.attn_sink", heads, 1, "col", "norm", i, fixed_bytes=FP32_BYTES)
        inv.linear(f"{a}.fused_wqa_wkv", hidden, q_lora + head_dim, "rep", i)
        inv.norm(f"{a}.q_norm", q_lora, i)
        inv.linear(f"{a}.wq_b", q_lora, heads * head_dim, "col", i)
        inv.norm(f"{a}.kv_norm", head_dim, i)
        inv.linear(f"{a}.wo_a", heads * head_dim // o_groups, o_groups * o_lora, "col", i)
        inv.linear(f"{a}.wo_b", o_groups * o_lora, hidden, "row", i)
        if r == CSA:  # the lightning indexer, replicated; its weights_proj and compressor are built unquantized
            inv.linear(f"{a}.indexer.wq_b", q_lora, index_heads * index_dim, "rep", i)
            inv.add(f"{a}.indexer.weights_proj", index_heads, hidden, "rep", "unquantized", i)
            _compressor(inv, f"{a}.indexer.compressor", i, hidden, index_dim, CSA)
        if r > 1:
            _compressor(inv, f"{a}.compressor", i, hidden, head_dim, r)
        f = f"{p}.ffn"
        inv.add(f"{f}.gate", experts, hidden, "rep", "router", i)
        if i < hash_layers:
            inv.add(f"{f}.gate.tid2eid", vocab, topk, "rep", "router", i, fixed_bytes=HASH_INDEX_BYTES)
        else:
            inv.add(f"{f}.gate.e_score_correction_bias", experts, 1, "rep", "router", i, fixed_bytes=FP32_BYTES)
        if shared:
            inv.linear(f"{f}.shared_experts.gate_up_proj", hidden, 2 * width * shared, "col", i)
            inv.linear(f"{f}.shared_experts.down_proj", width * shared, hidden, "row", i)
        routed_experts(inv, f, hidden, width, i, experts, topk)
        inv.norm(f"{p}.attn_norm", hidden, i)
        inv.norm(f"{p}.ffn_norm", hidden, i)
        attn.append(AttentionLayer("dsv4", 1, head_dim, 0, window=c.int("sliding_window"), compress_ratio=r,
                                   indexer_bytes=indexer_entry_bytes(index_dim) / CSA if r == CSA else 0,
                                   indexer_width=index_heads * index_dim if r == CSA else 0,
                                   indexer_head_dim=index_dim if r == CSA else 0))
    inv.add("model.hc_head_fn", hc, hc_dim, "rep", "norm", place="last", fixed_bytes=FP32_BYTES)
    inv.add("model.hc_head_base+scale", hc + 1, 1, "rep", "norm", place="last", fixed_bytes=FP32_BYTES)
    add_embeddings(inv, vocab, hidden, tied=False)
    extra = dict(num_experts=experts, experts_per_token=topk, moe_intermediate_size=width,
                 index_topk=c.int("index_topk"), head_dim=head_dim)
    return attn, extra


def _compressor(inv: Inventory, p: str, i: int, hidden: int, head_dim: int, ratio: int) -> None:
    """compressor.py DeepseekCompressor: a float32 positional bias per position in the window and a fused kv/gate
    projection (replicated, built without the quantization config), then an RMSNorm. Overlapping windows (CSA)
    are twice as wide."""
    coff = 2 if ratio == CSA else 1
    inv.add(f"{p}.ape", ratio, coff * head_dim, "rep", "norm", i, fixed_bytes=FP32_BYTES)
    inv.add(f"{p}.fused_wkv_wgate", 2 * coff * head_dim, hidden, "rep", "unquantized", i)
    inv.norm(f"{p}.norm", head_dim, i)


# --- the checkpoint's quantization ---------------------------------------------------------------------------

MXFP4_EXPERTS = QuantScheme("mxfp4", 4, 32, scale_bytes=1, experts_only=True)


def quant_scheme(qc: dict | None, expert_dtype: str | None, model_id: str) -> QuantScheme | None:
    """vLLM's DeepseekV4FP8Config (quant_config.py): a config.json quantization_config of method fp8 becomes
    deepseek_v4_fp8, FP8 128 x 128 blocks on every quantized linear; the routed experts are MXFP4 where
    expert_dtype is fp4 (its default: DeepSeek-V4-Flash), FP8 blocks where it is fp8 (Flash-Base). Anything else
    fails closed."""
    if qc is None:
        return None
    if not isinstance(qc, dict) or qc.get("quant_method") not in ("fp8", "deepseek_v4_fp8") \
            or list(qc.get("weight_block_size") or []) != [128, 128]:
        raise PlannerError(f"config.json of {model_id} quantizes DeepSeek-V4 as {qc!r}; the planner sizes its "
                           "native FP8 128 x 128 block checkpoints only (vLLM's deepseek_v4_fp8)")
    expert_dtype = expert_dtype or "fp4"
    if expert_dtype not in ("fp4", "fp8"):
        raise PlannerError(f"config.json of {model_id} has expert_dtype {expert_dtype!r}; vLLM's DeepSeek-V4 takes "
                           "fp4 or fp8")
    blocks = QuantScheme("deepseek_v4_fp8", 8, block=(128, 128), fp8_compute=True)
    if expert_dtype == "fp8":
        return blocks
    return replace(blocks, targets=((r"re:.*\.experts\.", MXFP4_EXPERTS), ("Linear", blocks)))


# --- the KV cache: vLLM's packed groups ----------------------------------------------------------------------


@dataclass(frozen=True)
class CacheSpec:
    """One layer's cache as vLLM 0.32 specifies it: a sliding window (window tokens kept) or full; block_size
    tokens per block; page bytes per block."""

    sliding: bool
    block_size: int
    window: int
    page: int

    def blocks_per_request(self, max_len: int, in_flight: int) -> int:
        """SlidingWindowSpec.max_admission_blocks_per_request / FullAttentionSpec.max_memory_usage_bytes, in
        blocks."""
        if self.sliding:  # (numbers, or arrays over the search's configurations)
            return ceil(minimum(self.window - 1 + in_flight, max_len) / self.block_size) + 1
        return ceil(max_len / self.block_size)


def _padded(nbytes: int) -> int:
    return math.ceil(nbytes / FP8_DS_MLA_ALIGNMENT) * FP8_DS_MLA_ALIGNMENT


def layer_caches(a: AttentionLayer) -> list[CacheSpec]:
    """A layer's caches in the order vLLM registers them (attention.py: the indexer's, then the sliding window's,
    the compressed latent, its compressor's state)."""
    r, head, index_head_dim = a.compress_ratio, a.head_size, a.indexer_head_dim
    caches = []
    if r == CSA:
        caches.append(CacheSpec(False, BLOCK_SIZE, 0, _padded(BLOCK_SIZE // CSA * indexer_entry_bytes(index_head_dim))))
        caches.append(_compressor_state(index_head_dim, CSA))
    caches.append(CacheSpec(True, SWA_BLOCK_SIZE, a.window, _padded(SWA_BLOCK_SIZE * FP8_DS_MLA_ENTRY_BYTES)))
    if r > 1:
        caches.append(CacheSpec(False, BLOCK_SIZE, 0, _padded(BLOCK_SIZE // r * FP8_DS_MLA_ENTRY_BYTES)))
        caches.append(_compressor_state(head, r))
    return caches


def _compressor_state(head_dim: int, ratio: int) -> CacheSpec:
    """CompressorStateCache: [block, 2 x coff x head_dim] float32 (the kv and score states), its window coff x
    ratio tokens."""
    coff = 2 if ratio == CSA else 1
    block = COMPRESSOR_BLOCK_SIZE[ratio]
    return CacheSpec(True, block, coff * ratio, _padded(block * 2 * coff * head_dim * FP32_BYTES))


def _approximate_gcd(values: list[int], lower_bound: int) -> int:
    """kv_cache_utils._approximate_gcd: the chunk size in [lower_bound, max] that pads the values least, ties to
    the larger."""
    best, best_pad = max(1, lower_bound), None
    for d in range(max(1, lower_bound), max(values) + 1):
        pad = sum((d - x % d) % d for x in values)
        if best_pad is None or pad < best_pad or (pad == best_pad and d > best):
            best, best_pad = d, pad
    return best


@dataclass(frozen=True)
class KVLayout:
    groups: tuple[tuple[CacheSpec, ...], ...]  # each KV cache group's caches
    bytes_per_block: int  # one block id across the packed groups: the widest group's pages

    def blocks_per_request(self, max_len: int, in_flight: int) -> int:
        """Blocks a request of max_len tokens holds, summed over the groups (get_max_concurrency_for_kv_cache_config)."""
        return sum(functools.reduce(maximum, (spec.blocks_per_request(max_len, in_flight) for spec in group))
                   for group in self.groups)


@functools.lru_cache(maxsize=64)  # the plan and the search ask for one model's layout many times
def kv_layout(layers: tuple[AttentionLayer, ...]) -> KVLayout:
    """kv_cache_utils._get_packed_kv_cache_groups on the model's caches: bucket caches of one type (full, or
    sliding with one window, and one block size); a bucket with as many caches of each page size is a repeating
    pattern, split into groups of an equal number of repeats (the approximate gcd of the patterns' repeats, at least
    the largest mixed pattern's); every group's block is as wide as the widest group's pages."""
    buckets: dict[tuple, list[CacheSpec]] = {}
    for a in layers:
        for spec in layer_caches(a):
            buckets.setdefault((spec.sliding, spec.block_size, spec.window), []).append(spec)
    bucketed = []
    for specs in buckets.values():
        by_page = {page: list(group) for page, group in groupby(sorted(specs, key=lambda s: s.page),
                                                                key=lambda s: s.page)}
        balanced = len({len(v) for v in by_page.values()}) == 1
        bucketed.append((specs, by_page, balanced, max(len(v) for v in by_page.values())))
    mixed = [most for _, by_page, balanced, most in bucketed if balanced and len(by_page) > 1]
    floor = max(mixed, default=0)
    repeats = _approximate_gcd([most for _, _, balanced, most in bucketed if balanced], floor) if floor else None

    def num_groups_for(balanced: bool, most: int) -> int:
        return math.ceil(most / repeats) if balanced and repeats is not None else 1

    def widest(by_page: dict, n: int) -> int:
        return sum(math.ceil(len(v) / n) * page for page, v in by_page.items())

    def is_state(spec: CacheSpec) -> bool:  # a sliding bucket left unsplit by the pattern (no mamba caches here)
        return repeats is None and spec.sliding

    anchor = max(widest(by_page, len(specs) if is_state(specs[0]) else num_groups_for(balanced, most))
                 for specs, by_page, balanced, most in bucketed)
    groups = []
    for specs, by_page, balanced, most in bucketed:
        n = num_groups_for(balanced, most)
        if is_state(specs[0]):
            n = max(n, math.ceil(len(specs) / max(anchor // specs[0].page, 1)))
        if n == 1:
            groups.append(tuple(specs))
            continue
        pattern = list(zip(*by_page.values(), strict=False))
        groups.extend(tuple(s for repeat in pattern[k::n] for s in repeat) for k in range(n))
    return KVLayout(tuple(groups), max(sum(s.page for s in group) for group in groups))




def rope_tables(raw: dict, ratios: list[int]) -> tuple[tuple[int, int | None], ...]:
    """The float32 cos/sin tables DeepseekV4ScalingRotaryEmbedding keeps (common/rope.py), one per kind of layer
    present: the sliding-window-only layers' plain RoPE over max_position_embeddings, and the compressing layers'
    own (compress_rope_theta), over original_max_position_embeddings x factor when the compress rope scales
    (YaRN), else the same length. Each layer builds the one its compress ratio asks for."""
    max_position = int(raw.get("max_position_embeddings") or 0)
    rope = int(raw.get("qk_rope_head_dim") or FP8_DS_MLA_ROPE_DIM)
    tables = [(max_position * rope, FP32_BYTES)] if any(r <= 1 for r in ratios) else []
    if any(r > 1 for r in ratios):
        params = raw.get("rope_scaling") or raw.get("rope_parameters") or {}
        if isinstance(params.get("compress"), dict):
            params = params["compress"]
        positions = max_position
        if params.get("rope_type", params.get("type", "default")) != "default":
            positions = math.ceil(int(params.get("original_max_position_embeddings") or max_position)
                                  * float(params.get("factor") or 1.0))
        tables.append((positions * rope, FP32_BYTES))
    return tuple(tables)
