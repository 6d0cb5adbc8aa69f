"""GGUF dequantisation of Q5_1 and the K-quants (Q4_K, Q5_K, Q6_K) against hand-packed blocks.

The reference is independent of the `gguf` package's decoder (which the loader calls): random
integer quants, 6/8-bit sub-block scales and fp16 super-block scales are packed into bytes by the
block layouts of llama.cpp (ggml-common.h: block_q5_1, block_q4_K, block_q5_K, block_q6_K), and the
expected weights are computed from those integers with the formulas of ggml-quants.c's
dequantize_row_* in float32, in the same order of operations. The packed bytes go into a GGUF file
written by `gguf.GGUFWriter`; `loaders.load_gguf` must return exactly the expected weights.
"""

import gguf
import numpy as np
import pytest
from tiny_models import llamacpp_permute

from introspect.models import loaders

QK_K = 256  # K-quant super-block size


def _fp16(rng, n):
    """n random fp16 scales of both signs, magnitudes around 2**-8."""
    mag = rng.uniform(0.5, 2.0, n) * 2.0**-8
    return (mag * rng.choice([-1.0, 1.0], n)).astype(np.float16)


def _bytes(a):
    """[blocks, ...] array -> [blocks, nbytes] uint8 in little-endian memory order."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint8).reshape(a.shape[0], -1)


def pack_q5_1(rng, n_blocks):
    """block_q5_1: d (fp16), m (fp16), qh (uint32: bit 4 of quant e at bit e), qs[16]
    (low nibbles: quants 0..15 low, 16..31 high). Value = q * d + m."""
    d, m = _fp16(rng, n_blocks), _fp16(rng, n_blocks)
    q = rng.integers(0, 32, size=(n_blocks, 32)).astype(np.uint32)
    qh = np.sum(((q >> 4) & 1) << np.arange(32, dtype=np.uint32), axis=1, dtype=np.uint32)
    qs = ((q[:, :16] & 0xF) | ((q[:, 16:] & 0xF) << 4)).astype(np.uint8)
    raw = np.concatenate(
        [_bytes(d[:, None]), _bytes(m[:, None]), _bytes(qh.astype("<u4")[:, None]), qs], axis=1
    )
    values = q.astype(np.float32) * d.astype(np.float32)[:, None] + m.astype(np.float32)[:, None]
    return raw, values


def _pack_k_scales(sc, mn):
    """12 bytes holding eight 6-bit scales and eight 6-bit mins (ggml's get_scale_min_k4
    inverted): bytes 0-3 scales 0-3 (+ top 2 bits of scales 4-7), bytes 4-7 mins 0-3 (+ top bits
    of mins 4-7), bytes 8-11 low nibbles of scales 4-7 | low nibbles of mins 4-7 << 4."""
    return np.concatenate(
        [
            sc[:, :4] | ((sc[:, 4:] >> 4) << 6),
            mn[:, :4] | ((mn[:, 4:] >> 4) << 6),
            (sc[:, 4:] & 0xF) | ((mn[:, 4:] & 0xF) << 4),
        ],
        axis=1,
    ).astype(np.uint8)


def _pack_nibbles_k(q):
    """qs[128] of Q4_K/Q5_K: in each 64-quant chunk c, byte 32c + l holds quant 64c + l (low
    nibble) and quant 64c + 32 + l (high nibble)."""
    q = (q & 0xF).reshape(-1, 4, 2, 32)
    return (q[:, :, 0] | (q[:, :, 1] << 4)).reshape(-1, 128).astype(np.uint8)


def _k_values(d, dmin, sc, mn, q):
    """y = (d * scale[sub]) * q - (dmin * min[sub]) with 32-quant sub-blocks, float32."""
    d1 = d.astype(np.float32)[:, None] * sc.astype(np.float32)  # [blocks, 8]
    m1 = dmin.astype(np.float32)[:, None] * mn.astype(np.float32)
    sub = np.arange(QK_K) // 32
    return d1[:, sub] * q.astype(np.float32) - m1[:, sub]


def pack_q4_k(rng, n_blocks):
    """block_q4_K: d, dmin (fp16), scales[12], qs[128] (4-bit quants)."""
    d, dmin = _fp16(rng, n_blocks), _fp16(rng, n_blocks)
    sc = rng.integers(0, 64, size=(n_blocks, 8)).astype(np.uint8)
    mn = rng.integers(0, 64, size=(n_blocks, 8)).astype(np.uint8)
    q = rng.integers(0, 16, size=(n_blocks, QK_K)).astype(np.uint8)
    raw = np.concatenate(
        [_bytes(d[:, None]), _bytes(dmin[:, None]), _pack_k_scales(sc, mn), _pack_nibbles_k(q)],
        axis=1,
    )
    return raw, _k_values(d, dmin, sc, mn, q)


def pack_q5_k(rng, n_blocks):
    """block_q5_K: d, dmin, scales[12], qh[32] (bit s of byte l = bit 4 of quant 32 s + l),
    qs[128] (low 4 bits, as Q4_K)."""
    d, dmin = _fp16(rng, n_blocks), _fp16(rng, n_blocks)
    sc = rng.integers(0, 64, size=(n_blocks, 8)).astype(np.uint8)
    mn = rng.integers(0, 64, size=(n_blocks, 8)).astype(np.uint8)
    q = rng.integers(0, 32, size=(n_blocks, QK_K)).astype(np.uint8)
    high = (q >> 4).reshape(n_blocks, 8, 32)  # [block, sub-block s, l]
    qh = np.sum(high << np.arange(8, dtype=np.uint8)[None, :, None], axis=1).astype(np.uint8)
    raw = np.concatenate(
        [
            _bytes(d[:, None]),
            _bytes(dmin[:, None]),
            _pack_k_scales(sc, mn),
            qh,
            _pack_nibbles_k(q),
        ],
        axis=1,
    )
    return raw, _k_values(d, dmin, sc, mn, q)


def pack_q6_k(rng, n_blocks):
    """block_q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (int8, one per 16
    quants), d (fp16). In each 128-quant half n, with rows r = 0..3 of 32 quants: ql byte
    64n + l holds rows 0 (low nibble) and 2 (high), ql byte 64n + 32 + l rows 1 and 3, qh byte
    32n + l holds the high bits of rows 0..3 at bits 0, 2, 4, 6. Value = d * scale * (q - 32)."""
    d = _fp16(rng, n_blocks)
    sc = rng.integers(-128, 128, size=(n_blocks, 16)).astype(np.int8)
    q = rng.integers(0, 64, size=(n_blocks, QK_K)).astype(np.uint8)
    rows = q.reshape(n_blocks, 2, 4, 32)
    lo, hi = rows & 0xF, rows >> 4
    ql = np.concatenate([lo[:, :, 0] | (lo[:, :, 2] << 4), lo[:, :, 1] | (lo[:, :, 3] << 4)], -1)
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)
    raw = np.concatenate(
        [
            ql.reshape(n_blocks, 128),
            qh.reshape(n_blocks, 64),
            sc.view(np.uint8),
            _bytes(d[:, None]),
        ],
        axis=1,
    ).astype(np.uint8)
    d1 = d.astype(np.float32)[:, None] * sc.astype(np.float32)  # [blocks, 16]
    values = d1[:, np.arange(QK_K) // 16] * (q.astype(np.float32) - 32)
    return raw, values


PACKERS = {"Q5_1": pack_q5_1, "Q4_K": pack_q4_k, "Q5_K": pack_q5_k, "Q6_K": pack_q6_k}


@pytest.mark.parametrize("qtype", list(PACKERS))
def test_packers_match_ggml_block_sizes(qtype):
    """The hand-built blocks have the sizes and element counts ggml declares for the type."""
    qt = gguf.GGMLQuantizationType[qtype]
    block, type_size = gguf.GGML_QUANT_SIZES[qt]
    raw, values = PACKERS[qtype](np.random.default_rng(0), 3)
    assert raw.dtype == np.uint8 and raw.shape == (3, type_size)
    assert values.shape == (3, block) and values.dtype == np.float32


# A one-layer Llama whose every matrix has rows of 256 values (one K-quant super-block).
HIDDEN, HEADS, KV_HEADS, VOCAB = 256, 4, 2, 32
HEAD_DIM = HIDDEN // HEADS
MATRICES = {  # GGUF name -> [rows (out), cols (in)]
    "token_embd.weight": (VOCAB, HIDDEN),
    "output.weight": (VOCAB, HIDDEN),
    "blk.0.attn_q.weight": (HEADS * HEAD_DIM, HIDDEN),
    "blk.0.attn_k.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
    "blk.0.attn_v.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
    "blk.0.attn_output.weight": (HIDDEN, HEADS * HEAD_DIM),
    "blk.0.ffn_gate.weight": (HIDDEN, HIDDEN),
    "blk.0.ffn_up.weight": (HIDDEN, HIDDEN),
    "blk.0.ffn_down.weight": (HIDDEN, HIDDEN),
}
NORMS = ("output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight")


def write_quantised_gguf(path, qtypes, seed):
    """Write the one-layer Llama with matrix `name` stored as `qtypes[name]`.

    Returns {name: expected float32 [rows, cols] in the file's (llama.cpp) row order}.
    """
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(HIDDEN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(VOCAB)
    expected = {}
    for name, (rows, cols) in MATRICES.items():
        qt = gguf.GGMLQuantizationType[qtypes[name]]
        block = gguf.GGML_QUANT_SIZES[qt][0]
        raw, values = PACKERS[qtypes[name]](rng, rows * cols // block)
        raw = raw.reshape(gguf.quants.quant_shape_to_byte_shape((rows, cols), qt))
        w.add_tensor(name, raw, raw_dtype=qt)
        expected[name] = values.reshape(rows, cols)
    for name in NORMS:
        w.add_tensor(name, rng.uniform(0.5, 1.5, HIDDEN).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expected


def _loaded_in_file_order(params):
    """The loader's params as GGUF-layout [out, in] matrices in llama.cpp's Q/K row order."""
    layer = params["layers_0"]
    attn, mlp = layer["attn"], layer["mlp"]
    return {
        "token_embd.weight": params["embed"]["embedding"],
        "output.weight": params["lm_head"]["kernel"].T,
        "blk.0.attn_q.weight": llamacpp_permute(attn["q_proj"]["kernel"].T, HEADS),
        "blk.0.attn_k.weight": llamacpp_permute(attn["k_proj"]["kernel"].T, KV_HEADS),
        "blk.0.attn_v.weight": attn["v_proj"]["kernel"].T,
        "blk.0.attn_output.weight": attn["o_proj"]["kernel"].T,
        "blk.0.ffn_gate.weight": mlp["gate_proj"]["kernel"].T,
        "blk.0.ffn_up.weight": mlp["up_proj"]["kernel"].T,
        "blk.0.ffn_down.weight": mlp["down_proj"]["kernel"].T,
    }


CASES = {q: {name: q for name in MATRICES} for q in PACKERS}
# A mixed file, as llama.cpp's Q4_K_M / Q5_K_M presets write them.
CASES["mixed"] = {name: list(PACKERS)[i % len(PACKERS)] for i, name in enumerate(MATRICES)}


@pytest.mark.parametrize("case", list(CASES))
def test_gguf_dequantisation_matches_hand_packed_blocks(tmp_path, case):
    path = tmp_path / f"{case}.gguf"
    expected = write_quantised_gguf(path, CASES[case], seed=len(case))
    config, params, reader = loaders.load_gguf(str(path))
    assert (config.hidden_size, config.num_heads, config.num_kv_heads) == (256, 4, 2)
    assert not config.tie_embeddings
    stored = {t.name: t.tensor_type.name for t in reader.tensors}
    assert all(stored[name] == CASES[case][name] for name in MATRICES)
    got = _loaded_in_file_order(params)
    for name, want in expected.items():
        assert np.all(np.isfinite(want)) and np.ptp(want) > 0
        assert got[name].dtype == np.float32
        np.testing.assert_array_equal(got[name], want, err_msg=f"{case}: {name}")


def test_corrupted_k_quant_scales_change_the_weights(tmp_path):
    """The comparison can fail: flipping one scale byte of one block changes exactly that
    block's sub-block values."""
    qtypes = {name: "Q4_K" for name in MATRICES}
    path = tmp_path / "q4k.gguf"
    expected = write_quantised_gguf(path, qtypes, seed=3)
    data = bytearray(path.read_bytes())
    reader = gguf.GGUFReader(str(path))
    tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_up.weight")
    offset = int(tensor.data_offset) + 4  # block 0: skip d and dmin, first scale byte
    data[offset] ^= 0x01  # scale 0 (quants 0..31 of row 0) changes by one
    path.write_bytes(bytes(data))
    _, params, _ = loaders.load_gguf(str(path))
    got = params["layers_0"]["mlp"]["up_proj"]["kernel"].T
    want = expected["blk.0.ffn_up.weight"]
    differs = got != want
    assert differs[0, :32].any() and not differs[0, 32:].any() and not differs[1:].any()
