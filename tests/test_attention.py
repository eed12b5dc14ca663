"""MPT's document-local attention: sdpa and flex give transformers' eager logits (and sdpa its gradients) for
single rows, padded batches and packed rows; a packed row's documents equal each document run alone."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from transformers import MptConfig, MptForCausalLM

from limit.errors import LimitError
from limit.models.mpt.attention import Layout, alibi_slopes, install, resolve

TOLERANCE = 1e-5
LENGTHS = (7, 23, 13)


@pytest.fixture(scope="module", params=[4, 6], ids=["4-heads", "6-heads"])
def reference(request) -> MptForCausalLM:
    """transformers' own MPT, untouched (6 heads: ALiBi slopes of a head count that is not a power of two).
    Heads of 16 dimensions: the smallest compiled flex takes on CUDA, so the CUDA tests run these models too."""
    torch.manual_seed(0)
    config = MptConfig(d_model=16 * request.param, n_heads=request.param, n_layers=2, max_seq_len=64, vocab_size=97)
    return MptForCausalLM(config).eval()


def patched(reference: MptForCausalLM, implementation: str) -> MptForCausalLM:
    return install(copy.deepcopy(reference), implementation)


@pytest.fixture(scope="module")
def docs() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, 97, (n,), generator=generator) for n in LENGTHS]


def packed(docs: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' padding-free form, as DataCollatorWithFlattening makes it."""
    return {
        "input_ids": torch.cat(docs)[None],
        "position_ids": torch.cat([torch.arange(len(d)) for d in docs])[None],
    }


def padded(docs: list[torch.Tensor], left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(d) for d in docs)
    ids = torch.zeros(len(docs), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, d in enumerate(docs):
        where = slice(width - len(d), width) if left else slice(0, len(d))
        ids[i, where], mask[i, where] = d, 1
    return ids, mask


def forward(model, **batch) -> torch.Tensor:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FlexAttention on CPU warns that it runs uncompiled
        return model(**batch).logits


IMPLEMENTATIONS = ["sdpa", "flex", "eager"]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_single_row_equals_eager(reference, docs, implementation):
    row = docs[1][None]
    assert torch.allclose(
        forward(patched(reference, implementation), input_ids=row),
        forward(reference, input_ids=row),
        atol=TOLERANCE,
        rtol=0,
    )


@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_padded_batch_equals_eager(reference, docs, implementation, left):
    ids, mask = padded(docs, left)
    ours = forward(patched(reference, implementation), input_ids=ids, attention_mask=mask)
    theirs = forward(reference, input_ids=ids, attention_mask=mask)
    real = mask.bool()
    assert (ours[real] - theirs[real]).abs().max() < TOLERANCE


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_packed_row_equals_each_document_alone(reference, docs, implementation):
    logits = forward(patched(reference, implementation), **packed(docs))[0]
    for doc, part in zip(docs, torch.split(logits, LENGTHS), strict=True):
        alone = forward(reference, input_ids=doc[None])[0]
        assert (part - alone).abs().max() < TOLERANCE


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_packed_row_longer_than_max_seq_len(reference, implementation):
    """transformers builds ALiBi at max_seq_len (64 here) and fails beyond it; documents of 50 packed to 150 run."""
    generator = torch.Generator().manual_seed(2)
    docs = [torch.randint(0, 97, (50,), generator=generator) for _ in range(3)]
    logits = forward(patched(reference, implementation), **packed(docs))[0]
    assert logits.shape[0] == 150
    assert (logits[100:] - forward(reference, input_ids=docs[2][None])[0]).abs().max() < TOLERANCE


def gradients(model, **batch) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(**batch).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_sdpa_gradients_equal_eager(reference, docs):
    ids, mask = padded(docs)
    labels = ids.masked_fill(mask == 0, -100)
    theirs = gradients(copy.deepcopy(reference).train(), input_ids=ids, attention_mask=mask, labels=labels)
    ours = gradients(patched(reference, "sdpa").train(), input_ids=ids, attention_mask=mask, labels=labels)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert (ours[name] - theirs[name]).abs().max() < TOLERANCE, name


def test_packed_sdpa_gradients_equal_padded_eager(reference, docs):
    """The loss over a packed row (first label of each document dropped) is the padded batch's loss."""
    batch = packed(docs)
    labels = torch.cat([torch.cat([torch.tensor([-100]), d[1:]]) for d in docs])[None]
    ids, mask = padded(docs)
    theirs = gradients(
        copy.deepcopy(reference).train(), input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)
    )
    ours = gradients(patched(reference, "sdpa").train(), **batch, labels=labels)
    for name in ours:
        assert (ours[name] - theirs[name]).abs().max() < TOLERANCE, name


def test_cached_generation_equals_transformers(reference):
    prompt = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(prompt)
    mask[0, :2] = 0  # left padding, as batched generation pads
    settings = {"attention_mask": mask, "max_new_tokens": 12, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        ours = patched(reference, "sdpa").generate(prompt, **settings)
        assert torch.equal(ours, reference.generate(prompt, **settings))


def test_flex_backward_refused_on_cpu_with_its_reason(reference, docs):
    model = patched(reference, "flex").train()
    with pytest.raises(NotImplementedError, match="backward on CPU"):
        model(**packed(docs), labels=torch.cat(docs)[None])


def test_branches_see_the_shared_context_and_themselves_only():
    """A context scored with two continuations in one row: each continuation as if it followed the context."""
    doc = torch.ones(1, 7, dtype=torch.long)
    pos = torch.tensor([[0, 1, 2, 3, 4, 3, 4]])  # context 0-2, branch 1 at 3-4, branch 2 at 3-4
    branch = torch.tensor([[0, 0, 0, 1, 1, 2, 2]])
    visible = Layout(doc, pos, queries=7, branch=branch, contiguous=False).visible()[0]
    assert visible[5].tolist() == [True, True, True, False, False, True, False]
    assert visible[4].tolist() == [True, True, True, True, True, False, False]


def test_slopes_are_mpts():
    from transformers.models.mpt.modeling_mpt import build_mpt_alibi_tensor

    for heads in (4, 6, 32, 64):
        theirs = -build_mpt_alibi_tensor(heads, 2)[:, 0, 0]  # bias at distance 1 from the last key
        assert torch.allclose(alibi_slopes(heads), theirs)


def test_auto_is_flex_on_cuda_and_sdpa_elsewhere():
    assert resolve("auto", "cuda") == "flex" and resolve("auto", "cpu") == "sdpa"
    with pytest.raises(LimitError, match="unknown implementation 'flash'"):
        resolve("flash", "cpu")


def test_heads_under_16_dimensions_never_reach_compiled_flex():
    """inductor refuses flex for head dimensions under 16: auto takes sdpa there, an explicit flex is refused."""
    assert resolve("auto", "cuda", head_dim=12) == "sdpa" and resolve("auto", "cuda", head_dim=16) == "flex"
    with pytest.raises(LimitError, match="at least 16, this model's is 8"):
        resolve("flex", "cuda", head_dim=8)
    assert resolve("flex", "cpu", head_dim=8) == "flex"  # uncompiled there: any size


def test_inference_keeps_no_layers_input(reference, docs):
    """Without output_hidden_states, a layer's input is freed once the next layer has it (the packed gauntlet's
    rows are sized for one layer's transients)."""
    import weakref

    model = patched(reference, "sdpa")
    first_input: list[weakref.ref] = []
    alive_in_last: list[bool] = []
    model.transformer.blocks[0].register_forward_pre_hook(lambda m, args: first_input.append(weakref.ref(args[0])))
    model.transformer.blocks[-1].register_forward_pre_hook(
        lambda m, args: alive_in_last.append(first_input[-1]() is not None)
    )
    forward(model, **packed(docs))
    assert alive_in_last == [False]
    with torch.no_grad():
        states = model(**packed(docs), output_hidden_states=True).hidden_states
    assert len(states) == len(model.transformer.blocks) + 1 and alive_in_last == [False, True]


def test_slopes_stay_fp32_on_their_device_and_are_built_once(reference):
    model = patched(reference, "sdpa").to(torch.bfloat16)
    attn = model.transformer.blocks[0].attn
    slopes = attn.slopes_on(torch.device("cpu"))
    assert slopes.dtype == torch.float32 and attn.slopes_on(torch.device("cpu")) is slopes
    assert torch.equal(slopes, alibi_slopes(attn.n_heads))


def test_compiled_flex_does_not_recompile_per_packed_length(reference, monkeypatch):
    """Every packed step has a new length; padded to flex's block size and with one set of layout tensors per
    forward, rows of five lengths share the graphs compiled for the first (dynamo's own compile counter,
    compiling on CPU for the test), and give sdpa's logits."""
    from torch._dynamo.testing import CompileCounter

    from limit.models.mpt import attention

    counter = CompileCounter()
    monkeypatch.setattr(attention, "COMPILED_DEVICES", {"cpu", "cuda"})
    monkeypatch.setattr(attention, "COMPILE_BACKEND", counter)
    monkeypatch.setattr(attention, "_compiled", {})
    torch._dynamo.reset()
    flex, sdpa = patched(reference, "flex"), patched(reference, "sdpa")
    generator = torch.Generator().manual_seed(4)
    for lengths in [(7, 23, 13), (50, 90), (130, 40), (200, 100, 20), (5,)]:
        batch = packed([torch.randint(0, 97, (n,), generator=generator) for n in lengths])
        assert (forward(flex, **batch) - forward(sdpa, **batch)).abs().max() < TOLERANCE
    assert counter.frame_count == 2  # create_block_mask and flex_attention, once each
    torch._dynamo.reset()


def test_install_refuses_other_architectures():
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(LimitError, match="GPT2LMHeadModel is not MPT"):
        install(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2)), "sdpa")


def test_checkpoints_stay_plain_mpt(reference, tmp_path):
    model = patched(reference, "sdpa")
    model.save_pretrained(tmp_path)
    loaded = MptForCausalLM.from_pretrained(tmp_path)
    assert loaded.config.architectures == ["MptForCausalLM"] and type(loaded.transformer).__name__ == "MptModel"
    assert loaded.state_dict().keys() == reference.state_dict().keys()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention's backward needs CUDA (none on CPU in torch)")
def test_cuda_flex_forward_and_backward_equal_sdpa(reference, docs):
    """Where a GPU is lent: compiled flex on a packed row, logits and gradients against sdpa (float32)."""
    model = copy.deepcopy(reference).cuda()
    batch = {k: v.cuda() for k, v in packed(docs).items()}
    labels = torch.cat([torch.cat([torch.tensor([-100]), d[1:]]) for d in docs])[None].cuda()
    results = {}
    for implementation in ("sdpa", "flex"):
        patched_model = install(copy.deepcopy(model), implementation).train()
        out = patched_model(**batch, labels=labels)
        out.loss.backward()
        grads = {n: p.grad for n, p in patched_model.named_parameters() if p.grad is not None}
        results[implementation] = (out.logits.detach(), grads)
    (logits_sdpa, grads_sdpa), (logits_flex, grads_flex) = results["sdpa"], results["flex"]
    assert (logits_flex - logits_sdpa).abs().max() < 1e-4
    for name, grad in grads_sdpa.items():
        assert (grads_flex[name] - grad).abs().max() < 1e-4, name


@pytest.mark.parametrize("implementation", ["sdpa", "flex"])
def test_branches_score_as_if_each_continuation_followed_the_context(reference, implementation):
    """A context with two continuations as branches, packed after another document: each branch's logits are
    those of context + that continuation run alone (ALiBi distances included)."""
    generator = torch.Generator().manual_seed(3)
    other, context = torch.randint(0, 97, (9,), generator=generator), torch.randint(0, 97, (11,), generator=generator)
    first, second = torch.randint(0, 97, (4,), generator=generator), torch.randint(0, 97, (6,), generator=generator)
    ids = torch.cat([other, context, first, second])[None]
    doc = torch.tensor([1] * 9 + [2] * 21)[None]
    pos = torch.cat([torch.arange(9), torch.arange(11), torch.arange(11, 15), torch.arange(11, 17)])[None]
    branch = torch.tensor([0] * 20 + [1] * 4 + [2] * 6)[None]
    layout = Layout(doc, pos, queries=30, branch=branch, contiguous=False)
    logits = forward(patched(reference, implementation), input_ids=ids, attention_mask=layout)[0]
    for continuation, where in ((first, slice(20, 24)), (second, slice(24, 30))):
        alone = forward(reference, input_ids=torch.cat([context, continuation])[None])[0]
        assert (logits[where] - alone[11:]).abs().max() < TOLERANCE
        assert (logits[9:20] - alone[:11]).abs().max() < TOLERANCE
    assert (logits[:9] - forward(reference, input_ids=other[None])[0]).abs().max() < TOLERANCE


def test_causal_documents_share_one_bias_corner():
    """Documents in plain causal order (consecutive positions, at most one branch after the trunk) take a
    corner of one cached bias, equal to the bias built for them alone."""
    slopes = alibi_slopes(4)
    layout = Layout.from_positions(torch.cat([torch.arange(5), torch.arange(9), torch.arange(3)])[None])
    corners = layout.span_biases(slopes, torch.float32)
    for (row, start, end), corner in zip(layout.spans, corners, strict=True):
        assert torch.equal(corner, layout.part(row, start, end).bias(slopes, torch.float32))
    assert len({c.untyped_storage().data_ptr() for c in corners}) == 1
    branched = Layout(torch.ones(1, 4, dtype=torch.long), torch.tensor([[0, 1, 1, 2]]), 4, torch.tensor([[0, 1, 2, 2]]))
    assert not branched.causal


def test_flex_builds_one_block_mask_per_forward(reference, docs, monkeypatch):
    from torch.nn.attention import flex_attention

    built = []
    real = flex_attention.create_block_mask
    monkeypatch.setattr(flex_attention, "create_block_mask", lambda *a, **k: built.append(1) or real(*a, **k))
    forward(patched(reference, "flex"), **packed(docs))
    assert len(built) == 1  # for both layers


def test_the_shared_causal_bias_cache_stays_bounded(monkeypatch):
    from limit.models.mpt import attention

    monkeypatch.setattr(attention, "_CAUSAL_BIASES", {})
    monkeypatch.setattr(attention, "CAUSAL_BIAS_CACHE_BYTES", 4 * 256 * 256 * 4)  # 4 heads x 256^2 float32
    slopes = attention.alibi_slopes(4)
    small = attention.causal_bias(200, slopes, torch.float32, "cpu")
    large = attention.causal_bias(300, slopes, torch.float32, "cpu")  # built, used, not kept
    assert small.shape == (1, 4, 200, 200) and large.shape == (1, 4, 300, 300)
    assert [b.shape[-1] for b in attention._CAUSAL_BIASES.values()] == [256]
    assert torch.equal(large[:, :, :200, :200], small)


def test_reentrant_checkpointing_gives_the_same_gradients(reference, docs):
    """The finetune checkpoints reentrantly (ZeRO-3's gathers and compiled flex's backward have failed under the
    non-reentrant default): a packed row's gradients are those of a run without checkpointing."""
    from limit.training.trainer import checkpointing_arguments

    name = next(iter(checkpointing_arguments(True)))
    assert checkpointing_arguments(True)[f"{name}_kwargs"] == {"use_reentrant": True}
    labels = torch.cat([torch.cat([torch.tensor([-100]), d[1:]]) for d in docs])[None]
    plain = gradients(patched(reference, "sdpa").train(), **packed(docs), labels=labels)
    model = patched(reference, "sdpa").train()
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable({"use_reentrant": True})
    checkpointed = gradients(model, **packed(docs), labels=labels)
    assert all((checkpointed[n] - g).abs().max() < TOLERANCE for n, g in plain.items())
