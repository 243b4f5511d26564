"""Mutation testing for nanobark: plant one plausible bug at a time and see whether the tests notice.

    python scripts/mutate.py --check                 # every snippet still found exactly once? (no tests run)
    python scripts/mutate.py --list                  # the mutants, one a line
    python scripts/mutate.py --only codec_no_lstm_skip,sem_min_eos_off --json out.json
    python scripts/mutate.py --markdown              # all of them (1-2 h on 2 cores), a table for docs/testing.md

Each mutant in MUTANTS replaces one snippet of one file; the snippet must occur there exactly once, so a
refactor that moves or rewords the code makes --check (and every run) fail loudly instead of silently
testing nothing. The tree (nanobark/, weights_convert/, scripts/, tests/, setup.cfg, pyproject.toml) is
copied once to a temporary folder; for each mutant the file is changed there, `pytest -x` runs the mutant's
test selection in the copy, and the file is put back. Fates: killed (pytest exit 1: a test failed or errored),
survived (exit 0), error (any other exit, e.g. 2 for a collection error: caught, but listed apart), timeout.
Exit status: 0, or 2 when the mutant list is broken (or the copy would not be the code under test).

Import path: the venv installs nanobark in editable mode through a finder that setuptools *appends* to
sys.meta_path, after the normal path finder, so PYTHONPATH=<copy> wins (and reaches the subprocesses the
tests start); pytest also runs from the copy's root. `probe` checks this before any mutant runs.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPIED = ("nanobark", "weights_convert", "scripts", "tests", "setup.cfg", "pyproject.toml")


class Mutant(NamedTuple):
    id: str
    file: str
    old: str  # must occur exactly once in `file`
    new: str
    bug: str  # the plausible bug, in one line
    tests: tuple  # the smallest pytest selection that should kill it


GEN, BATCH, LONG, API = (
    "tests/test_generation.py",
    "tests/test_batch.py",
    "tests/test_longform.py",
    "tests/test_api.py",
)
CODEC, TOK, SAMP = "tests/test_codec.py", "tests/test_tokenizer.py", "tests/test_sampling.py"
G, S, C = "nanobark/generation.py", "nanobark/sampling.py", "nanobark/codec.py"
T, L, B = "nanobark/tokenizer.py", "nanobark/longform.py", "nanobark/bark.py"
LAYOUT = "nanobark/layout.py"
GPT, CKPT, HUB = "nanobark/gpt.py", "nanobark/weights/checkpoint.py", "nanobark/weights/hub.py"
GPT_TESTS, FAST = "tests/test_gpt.py", "tests/test_fast.py"
GEN_T = GEN + "::test_"
CKPT_SIZES = "tests/test_checkpoint.py::test_a_config_asking_for_more_than_the_weights_hold_is_refused_before_building"
HUB_FORMAT = "tests/test_hub.py::test_a_folder_of_an_older_format_is_refused_and_the_cache_converts_it_again"
CORPUS, SPEAK, SYNTH = "nanobark/cli/corpus.py", "nanobark/cli/speak.py", "tests/test_synthesize.py::test_"
AUDIO_OUT = "nanobark/audio_out.py"
CORPUS_EOS = SYNTH + "a_long_item_stops_at_0_05_and_a_short_one_at_0_2_unless_the_flag_or_row_says"
CLI_SEED = "tests/test_cli.py::test_the_command_takes_the_largest_seed_and_refuses_one_long_form_cannot_use"
PCM = "tests/test_cli.py::test_raw_audio_to_standard_output_is_the_wav_file_s_samples_clipped_not_wrapped"
ENCODER, HUBERT, HUBERT_TESTS = "tests/test_encoder.py", "nanobark/hubert.py", "tests/test_hubert.py"
AUDIO, AUDIO_TESTS, SYNTH_FILE = "nanobark/audio.py", "tests/test_audio.py", "tests/test_synthesize.py"
CLI_INIT, PROGRESS = "nanobark/cli/__init__.py", "nanobark/progress.py"
SOURCE_SIZES = "tests/test_convert.py::test_a_source_config_asking_for_more_than_its_weights_is_refused_before_building"
M = Mutant

# one mutant, two lines: the formatter leaves the table alone
# fmt: off
MUTANTS = [
    # ---- semantic stage
    M("sem_min_eos_off", G, "if min_eos_p is not None:", "if False:",
      "min_eos_p threshold switched off: only a drawn EOS stops the semantic stage", (GEN, BATCH)),
    M("sem_stop_overwritten", G, "torch.where(stop & ~done, n, lengths)", "torch.where(stop, n, lengths)",
      "a batch sample's stop step is overwritten after it has already stopped", (GEN, BATCH)),
    M("sem_decode_pos", G, "out[:, n - 1 : n], n_prompt + n)", "out[:, n - 1 : n], n_prompt + n + 1)",
      "semantic decode steps run one position too far", (GEN,)),
    M("sem_cutoff_len", G, "torch.where(done, lengths, n + 1)", "torch.where(done, lengths, n)",
      "the max-duration cut drops the last token generated", (GEN,)),
    M("sem_history_head", G, "[-SEMANTIC_HISTORY:]", "[:SEMANTIC_HISTORY]",
      "semantic history is the voice's first 256 tokens", (GEN,)),
    # ---- coarse stage
    M("coarse_no_hack", G, "flat[-n_coarse:][:-2]", "flat[-n_coarse:]",
      "the original's [:-2] time-alignment trim of the coarse history is dropped", (GEN,)),
    M("coarse_steps_ceil", G, "np.floor(n_semantic * COARSE_RATIO / 2)", "np.ceil(n_semantic * COARSE_RATIO / 2)",
      "one coarse frame too many when rounding the step count", (GEN,)),
    M("coarse_window_start", G, "max(0, idx - MAX_SEMANTIC_HISTORY)", "max(0, idx - MAX_SEMANTIC_HISTORY + 1)",
      "the sliding semantic window starts one id late", (GEN,)),
    M("coarse_idx_trunc", G, "int(round(n_step / COARSE_RATIO))", "int(n_step / COARSE_RATIO)",
      "the semantic position of a coarse step is truncated, not rounded", (GEN,)),
    M("coarse_codebook_parity", G, "(n_step % 2) * CODEBOOK_SIZE", "((n_step + 1) % 2) * CODEBOOK_SIZE",
      "even steps sample codebook 1 and odd steps codebook 0", (GEN,)),
    M("coarse_reuse_padded", G, "shared_prefix(cached, ctx) if pad is None else 0", "shared_prefix(cached, ctx)",
      "the KV cache is reused although left padding shifted the contexts", (GEN, BATCH)),
    M("coarse_decode_pos", G, "ctx.shape[1] + len(fed), pad", "ctx.shape[1] + len(fed) + 1, pad",
      "coarse decode steps run one position too far", (GEN,)),
    M("coarse_idle_draw", G, "[n_step < n for n in n_steps]", "[n_step <= n for n in n_steps]",
      "a sample past its own n_steps draws once more, shifting its seeded stream", (GEN, BATCH)),
    M("coarse_cb1_offset", G, "torch.tensor([[0], [CODEBOOK_SIZE]]", "torch.tensor([[0], [0]]",
      "codebook 1's offset of 1024 is not subtracted back", (GEN,)),
    # ---- fine stage
    M("fine_fill_unclamped", G, "min(n_history + n * FINE_STEP, total - FINE_STEP)", "n_history + n * FINE_STEP",
      "the fine stage's fill clamp removed: the last window fills too little", (GEN, BATCH)),
    M("fine_start_unclamped", G, "min(n * FINE_STEP, total - FINE_WINDOW)", "n * FINE_STEP",
      "fine windows are not clamped to the end of the buffer", (GEN, BATCH)),
    M("fine_loops_short", G, "/ FINE_STEP)) + 1", "/ FINE_STEP))",
      "one fine window too few (the first window is not counted)", (GEN,)),
    M("fine_mask_zero", G, "np.full((N_FINE - n_coarse, T), CODEBOOK_SIZE", "np.full((N_FINE - n_coarse, T), 0",
      "codebooks to predict start as code 0, not the 1024 mask id", (GEN,)),
    M("fine_codebook_from", G, "range(n_coarse, N_FINE)", "range(n_coarse + 1, N_FINE)",
      "the first codebook after the given ones is never predicted", (GEN,)),
    M("fine_no_temp", G, "F.softmax(logits[i].float() / temp, dim=-1)", "F.softmax(logits[i].float(), dim=-1)",
      "the fine temperature is ignored", (GEN,)),
    M("fine_keeps_history", G, "[:, n_hist : n_hist + c.shape[1]]", "[:, :c.shape[1]]",
      "the voice's fine history is returned in place of the output's start", (GEN,)),
    # ---- sampling
    M("topp_ignored_with_topk", S, "if top_p is not None:", "if top_p is not None and top_k is None:",
      "top-p is ignored whenever top-k is set", (SAMP, GEN,)),
    M("multinomial_wrong_dist", S, "(probs / q)", "(probs * q)",
      "the seeded multinomial draws from a wrong distribution", (SAMP, GEN, BATCH)),
    M("topp_shift_wrong_way", S, "remove[1:] = remove[:-1].copy()", "remove[:-1] = remove[1:].copy()",
      "the nucleus mask is shifted the wrong way", (SAMP, GEN,)),
    M("topk_drops_kth", S, "logits < kth", "logits <= kth",
      "top-k also masks the k-th token itself", (SAMP, GEN,)),
    # ---- codec
    M("codec_pad_swapped", C, "reflect_pad(x, pad, extra)", "reflect_pad(x, extra, pad)",
      "causal convs pad on the right instead of the left", (CODEC,)),
    M("codec_trim_left", C, "x[..., : x.shape[-1] - trim]", "x[..., trim:]",
      "the transposed conv's overhang is trimmed from the left", (CODEC,)),
    M("codec_no_shortcut", C, "return self.shortcut(x) + self.conv2", "return x + self.conv2",
      "the residual block's shortcut conv is skipped", (CODEC,)),
    M("codec_no_lstm_skip", C, "(lstm(h)[0] + h)", "lstm(h)[0]",
      "the skip connection around the LSTM is dropped", (CODEC,)),
    M("codec_one_codebook", C, "self.codebooks[i]) for i in range(n_q)", "self.codebooks[0]) for i in range(n_q)",
      "every code is looked up in codebook 0", (CODEC,)),
    # ---- text prompt
    M("prompt_offset_10000", LAYOUT, "TEXT_OFFSET = 10_048", "TEXT_OFFSET = 10_000",
      "text ids offset by the semantic vocab size, not 10048", (TOK,)),
    M("prompt_pad_infer", LAYOUT, "TEXT_PAD = 129_595", "TEXT_PAD = 129_599",
      "the text block is padded with the infer token id", (TOK,)),
    M("prompt_keeps_tail", T, "ids = ids[:length]", "ids = ids[-length:]",
      "truncation keeps the last 256 tokens instead of the first", (TOK,)),
    M("prompt_left_pad", T, "np.pad(ids, (0, length - len(ids))", "np.pad(ids, (length - len(ids), 0)",
      "the text block is padded on the left", (TOK,)),
    M("prompt_warn_at_256", T, "if len(ids) > length:", "if len(ids) >= length:",
      "a text of exactly 256 tokens warns that it was truncated", (TOK,)),
    # ---- long form
    M("long_same_seed_per_batch", L, "bark.generate(batch, voice=voice, seed=item_seed(seed, i)",
      "bark.generate(batch, voice=voice, seed=item_seed(seed, 0)",
      "every batch of segments gets the same seed when there are more segments than batch_size", (LONG,)),
    M("long_seed_plus_one", "nanobark/settings.py", "else seed + i", "else seed + i + 1",
      "segment i gets seed + i + 1, so segment 0 differs from generate(seed)", (LONG,)),
    M("long_one_by_one_same_seed", L, "voice=prompt, seed=item_seed(seed, i)", "voice=prompt, seed=seed",
      "segments made one by one all reuse the base seed", (LONG,)),
    M("long_silence_after_last", L, "i == len(pieces) - 1", "i == len(pieces)",
      "silence is appended after the last segment too", (LONG,)),
    M("long_carry_from_voice", L, "prompt = _carry(prompt, full)", "prompt = _carry(voice, full)",
      "a too-short segment falls back to the first voice, not the prompt it was given", (LONG,)),
    # ---- seeds in bark.py
    M("bark_same_seed_per_sample", B, "item_seed(seed, i) for i in range(n)", "item_seed(seed, 0) for i in range(n)",
      "every sample of a batch gets the same seed", (BATCH,)),
    M("bark_seed_zero_is_none", B, "if seed is None:", "if not seed:",
      "seed=0 is taken as no seed: draws come from the global RNG", (GEN, API, BATCH)),
    M("bark_stage_reseed", B, "s.top_p, **per_stage)", "s.top_p, **dict(per_stage, seed=seed))",
      "the coarse stage restarts each sample's stream instead of continuing it", (GEN, API, BATCH)),
    # ---- the reshaped model and loading code (added after the reshape)
    M("gpt_mask_strict", GPT, "mask = k <= q", "mask = k < q",
      "the causal mask hides each token from itself", (GPT_TESTS, FAST)),
    M("gpt_pad_no_self", GPT, "| (k == q)  # (B, 1, T, S)", " # (B, 1, T, S)",
      "a padding query attends to nothing (NaN that spreads)", (FAST, BATCH)),
    M("gpt_forward_keys", GPT, "self._run(x, slots, start + T, pad", "self._run(x, slots, start + T - 1, pad",
      "the eager path reads one cache slot too few", (GPT_TESTS, FAST)),
    M("gpt_fixed_no_pad", GPT, "attention_mask(slots, self.config.block_size, pad)",
      "attention_mask(slots, self.config.block_size, None)", "the fixed-shape step ignores left padding", (FAST,)),
    # ---- issue 22: int8 steps, the bfloat16 copy for wide inputs, one codebook's head rows
    M("int8_wide_off_by_one", "nanobark/cpu_speed.py", "x.numel() >= WIDE_ROWS", "x.numel() > WIDE_ROWS",
      "an input of exactly WIDE_ROWS rows still takes the int8 kernel", (FAST,)),
    M("int8_rows_ignored", "nanobark/cpu_speed.py", "packed = self.packed if rows is None else self._rows(rows)",
      "packed = self.packed", "the int8 head computes every row when one codebook's rows are asked for", (FAST,)),
    M("int8_kv_float32", "nanobark/cpu_speed.py", "module.kv_dtype = torch.bfloat16", "pass",
      "with the bfloat16 copy, keys and values still stay float32 (twice the bytes a step reads)", (FAST,)),
    M("int8_chunks_reordered", "nanobark/cpu_speed.py", "for c in rows2d.split(CHUNK_ROWS)])",
      "for c in rows2d.split(CHUNK_ROWS)][::-1])", "a wide narrowing product's row chunks come back in the wrong order",
      (FAST,)),
    M("kv_write_keys_only", GPT, "self.kv[:, :, :, slots] = kv", "self.kv[:1, :, :, slots] = kv[:1]",
      "the cache's one-copy write takes the keys but not the values", (GPT_TESTS,)),
    M("text_ids_not_normalized", "nanobark/tokenizer.py", "return self.encode(normalize_text(text))",
      "return self.encode(text)", "text -> ids skips Suno's whitespace cleanup", ("tests/test_tokenizer.py",)),
    M("int8_fine_keeps_int8", "nanobark/cpu_speed.py", 'steps = hasattr(model, "setup_cache") if steps is None',
      "steps = True if steps is None",
      "the fine GPT keeps int8 weights it never uses beside its bfloat16 copy", (FAST,)),
    M("ckpt_sizes_unchecked", CKPT, "if theirs is not None and not _at_most(ours, theirs)\n", "if False\n",
      "config sizes are not checked against the weights file's header", (CKPT_SIZES,)),
    M("hub_old_format_kept", HUB, 'meta.get("format_version", 1) == FORMAT_VERSION and', "meta and",
      "a cached conversion of an older format is used as it is", (HUB_FORMAT,)),
    M("ids_top_inclusive", LAYOUT, "if lo < 0 or top >= high:", "if lo < 0 or top > high:",
      "a token id equal to the vocabulary size passes the check", ("tests/test_voices.py",)),
    M("voice_ratio_check", "nanobark/voices.py", "!= 1.5:", "!= 1.4:",
      "the coarse/semantic ratio check of voices is wrong", ("tests/test_voices.py",)),
    # ---- issue 19 survivors
    M("sem_short_history_at_end", G, "hist[: len(tail)] = tail", "hist[len(hist) - len(tail) :] = tail",
      "a voice's short semantic history (< 256 ids) sits at the end of the history slots",
      (GEN_T + "a_voice_shorter_than_256_semantic_ids_fills_the_history_from_the_start_as_the_original",)),
    M("coarse_odd_semantic_history", G, "len(sem) - len(sem) % 2", "len(sem)",
      "the coarse stage keeps an odd number of the voice's semantic ids",
      (GEN_T + "an_odd_length_voice_gives_the_coarse_stage_an_even_semantic_history_as_the_original",)),
    M("sem_duration_at_limit", G, "and duration > ", "and duration >= ",
      "max_duration stops one token early when the duration reaches it exactly",
      (GEN_T + "a_duration_reached_exactly_still_generates_the_next_token_as_the_original",)),
    M("clone_first_ids", "nanobark/cloning.py", "semantic[-keep:]", "semantic[:keep]",
      "a long recording's voice keeps its first 256 semantic ids, not the last (beside the last codes)",
      ("tests/test_cloning.py::test_a_long_recording_keeps_the_last_256_semantic_ids_and_the_frames_of_that_same_span",)),
    M("audio_min_exclusive", "nanobark/audio.py", "if seconds < MIN_SECONDS:", "if seconds <= MIN_SECONDS:",
      "a clip of exactly the minimum length is refused as too short",
      ("tests/test_audio.py::test_a_clip_of_exactly_the_minimum_length_loads_and_one_sample_less_is_refused",)),
    M("write_no_fsync", "nanobark/files.py", "os.fsync(f.fileno())", "f.flush()",
      "write_atomic renames without fsync (a power cut can leave an empty file)",
      ("tests/test_files.py::test_write_atomic_flushes_the_temporary_file_to_disk_before_the_rename",)),
    # ---- issue 19: twenty new, in modules no mutant had reached (the encoder, HuBERT, the quantizer, the
    # resampler and clip loading, corpus seeds and shares, the command's parser, ids and temporary files)
    M("enc_ratios_not_reversed", C, "enumerate(reversed(cfg.ratios))", "enumerate(cfg.ratios)",
      "the encoder downsamples in the decoder's order of ratios", (ENCODER,)),
    M("enc_no_residual", C, "residual = residual - F.embedding(idx, book)",
      "residual = residual + 0 * F.embedding(idx, book)",
      "every codebook quantizes the latent itself, not what the codebooks before left", (ENCODER,)),
    M("enc_farthest_code", C, "idx = dist.max(dim=-1).indices", "idx = dist.min(dim=-1).indices",
      "the encoder picks the farthest codeword", (ENCODER,)),
    M("pad_zeros_not_reflect", C, 'x = F.pad(x, (left, right), mode="reflect")', "x = F.pad(x, (left, right))",
      "causal convs pad with zeros instead of reflecting", (ENCODER,)),
    M("hubert_groupnorm_every_conv", HUBERT, "            if i == 0:\n", "            if True:\n",
      "HuBERT's GroupNorm runs after every conv, not the first only", (HUBERT_TESTS,)),
    M("hubert_pos_keeps_extra_frame", HUBERT, "[..., :T]", "[..., 1:]",
      "the positional conv drops its first frame instead of the extra last one", (HUBERT_TESTS,)),
    M("hubert_pre_ln", HUBERT, "x = self.ln_1(x + self.attn(x))", "x = x + self.attn(self.ln_1(x))",
      "HuBERT's attention is pre-LN (GPT's order) instead of post-LN", (HUBERT_TESTS,)),
    M("hubert_tanh_gelu", HUBERT, "F.gelu(self.fc1(x))", 'F.gelu(self.fc1(x), approximate="tanh")',
      "HuBERT's MLP uses the tanh approximation of GELU", (HUBERT_TESTS,)),
    M("quant_argmax_over_time", "nanobark/quantizer.py", "self.logits(features).argmax(dim=-1)",
      "self.logits(features).argmax(dim=1)", "the quantizer takes its argmax over time", (HUBERT_TESTS,)),
    M("resample_no_rolloff", AUDIO, "cutoff = min(orig, new) * ROLLOFF", "cutoff = min(orig, new)",
      "the resampler's low-pass edge ignores the rolloff", (AUDIO_TESTS,)),
    M("resample_window_wider", AUDIO, "window = torch.cos(t * math.pi / ZEROS / 2) ** 2",
      "window = torch.cos(t * math.pi / (ZEROS + 1) / 2) ** 2", "the Hann window is one zero crossing wider",
      (AUDIO_TESTS,)),
    M("resample_length_floored", AUDIO, "return -(-length * new // orig)", "return length * new // orig",
      "the resampled length is floored, not ceiled", (AUDIO_TESTS,)),
    M("downmix_channel_0", AUDIO, "data.mean(axis=1)", "data[:, 0]",
      "a stereo recording keeps its first channel instead of the mean", (AUDIO_TESTS,)),
    M("tail_without_margin", AUDIO, "first // new - math.ceil(width / orig)", "first // new",
      "a long recording's tail is cut without the filter's margin", (AUDIO_TESTS,)),
    M("seed_from_python_hash", CORPUS, 'hashlib.sha256(id_.encode("utf-8", "surrogatepass")).digest()',
      'hash(id_).to_bytes(8, "big", signed=True)', "an item's seed comes from Python's salted hash()",
      (SYNTH_FILE,)),
    M("shares_overlap", CORPUS, "[rank::world]", "[rank:]", "torchrun's ranks get overlapping shares",
      (SYNTH_FILE,)),
    M("usage_error_exit_1", "nanobark/cli/parser.py", "self.exit(2, ", "self.exit(1, ",
      "a usage error exits 1, like a failed run", ("tests/test_cli.py",)),
    M("id_backslash_allowed", "nanobark/cli/manifest.py", 'if "/" in value or "\\\\" in value or',
      'if "/" in value or', "a manifest id may hold a backslash (a path on Windows)", (SYNTH_FILE,)),
    M("temp_name_any_hex", "nanobark/files.py", "[0-9a-f]{12}\\.tmp$", "[0-9a-f]+\\.tmp$",
      "remove_temp_files deletes any .NAME.HEX.tmp, not only write_atomic's own names", ("tests/test_files.py",)),
    M("settings_top_p_zero", "nanobark/settings.py", "not 0 < _number(name, top_p) <= 1",
      "not 0 <= _number(name, top_p) <= 1", "top_p = 0 (nothing could be drawn) passes the check",
      ("tests/test_settings.py", "tests/test_sampling.py")),
    # ---- issue 19 survivors (caches)
    M("stamp_whole_seconds", HUB, "stamp[entry.name] = [st.st_size, st.st_mtime_ns]",
      "stamp[entry.name] = [st.st_size, int(st.st_mtime)]",
      "a source stamp keeps whole seconds: a same-size rewrite within one second is not reconverted",
      ("tests/test_hub.py::test_a_same_size_rewrite_within_one_second_changes_the_source_stamp",)),
    M("convert_api_replaces_foreign", "nanobark/weights/convert/folder.py", "    check_output(out_dir)\n", "",
      "convert() from Python replaces a non-empty folder that no conversion wrote (the command refuses it)",
      ("tests/test_convert.py::test_convert_from_python_refuses_an_output_it_did_not_write",)),
    # ---- issue 19 survivors (part B)
    M("seed_max_refused", "nanobark/settings.py", "0 <= seed <= MAX_SEED - (n - 1)", "0 <= seed < MAX_SEED - (n - 1)",
      "the largest valid seed (2**63 - 1) is refused",
      ("tests/test_settings.py::test_the_largest_seed_is_taken_and_a_batch_s_last_seed_must_fit_too",
       BATCH + "::test_a_batch_s_seeds_run_up_to_the_largest_and_no_further", CLI_SEED)),
    M("bark_batch_seed_one_sample", B, "seed = check_seed(seed, n=n)", "seed = check_seed(seed)",
      "a batch's seed is checked for one sample only: seed + i may pass 2**63 - 1",
      (BATCH + "::test_a_batch_s_seeds_run_up_to_the_largest_and_no_further",)),
    M("long_seed_one_segment", L, "check_seed(seed, n=len(texts))", "check_seed(seed)",
      "long form checks the seed for one segment only: seed + i may pass 2**63 - 1", (CLI_SEED,)),
    M("split_abbrev_case", L, "word[1].lower() in ABBREVIATIONS", "word[1] in ABBREVIATIONS",
      "capitalised abbreviations (Mr., Dr.) are taken for sentence ends",
      (LONG + "::test_a_capitalised_abbreviation_is_no_sentence_end",)),
    M("corpus_min_eos_swapped", CORPUS, "settings.defaults(long)", "settings.defaults(not long)",
      "long and short corpus items get each other's min_eos_p default (0.2 and 0.05)", (CORPUS_EOS,)),
    M("corpus_form_by_flag", CORPUS, "item_settings(row, job.defaults, long)",
      "item_settings(row, job.defaults, row.long)",
      "a text over 256 tokens, spoken in long form, gets the one-generation settings", (CORPUS_EOS,)),
    M("corpus_long_at_256", "nanobark/longform.py", "return n > TEXT_LENGTH", "return n >= TEXT_LENGTH",
      "a text of exactly 256 tokens is spoken in long form",
      (SYNTH + "a_text_of_exactly_256_tokens_is_one_generation_and_257_is_long_form",)),
    M("corpus_rerun_exit_0", CORPUS, "1 if self.failed and not self.done else 0",
      "1 if self.failed and not self.done and not self.skipped else 0",
      "a rerun that makes nothing and fails a row exits 0 (the items done before count as made)",
      (SYNTH + "a_rerun_that_makes_nothing_and_fails_a_row_exits_1",)),
    M("pcm_unclipped", AUDIO_OUT, "np.clip(np.floor(np.asarray(audio, np.float32) * 32768), -32768, 32767)",
      "np.floor(np.asarray(audio, np.float32) * 32768)",
      "samples beyond [-1, 1] wrap around in 16-bit PCM (loud clicks)", (PCM,)),
    M("pcm_own_conversion", SPEAK, "out.write(pcm16(chunk).tobytes())",
      "out.write(np.round(chunk * 32767).astype(\"<i2\").tobytes())",
      "--out - converts to int16 its own way, unclipped", (PCM,)),
    M("clone_npz_case", "nanobark/voices.py", 'path if path.lower().endswith(".npz")', 'path if path.endswith(".npz")',
      "`nanobark clone --out ME.NPZ` writes ME.NPZ.npz",
      ("tests/test_cloning.py::test_clone_out_keeps_an_upper_case_npz_suffix_as_it_is",)),
    # ---- issue 18 hardening
    M("h18_atomic_no_check", "nanobark/files.py", "missing = check(tmp) if check is not None else None",
      "missing = None", "write_atomic skips the read-back: a file a full disk cut short replaces the old one",
      ("tests/test_files.py::test_write_atomic_replaces_nothing_with_a_file_its_check_finds_cut",)),
    M("h18_audio_no_readback", "nanobark/cli/speak.py", "subtype=subtype), check=whole)",
      "subtype=subtype))",
      "write_audio trusts libsndfile: a FLAC or Ogg file cut at close is renamed into place",
      ("tests/test_files.py::test_audio_a_full_disk_cuts_short_replaces_nothing",)),
    M("h18_voice_no_readback", "nanobark/voices.py", "write_atomic(path, write, check=whole)",
      "write_atomic(path, write)", "save_voice does not read the voice back before it replaces the old one",
      ("tests/test_files.py::test_save_voice_replaces_nothing_with_a_voice_that_does_not_read_back",)),
    M("h18_resume_trusts_any_file", "nanobark/cli/corpus.py", "and _whole(job, entries[it.row.id])",
      "", "resume counts an item done when its file is there, even cut or empty",
      ("tests/test_synthesize.py::test_a_done_item_whose_file_was_cut_or_emptied_since_is_made_again",)),
    M("h18_manifest_line_short", "nanobark/cli/corpus.py", "if written < len(line):", "if False:",
      "a manifest line that a full disk cut short counts as written",
      ("tests/test_synthesize.py::test_a_manifest_line_cut_short_by_a_full_disk_is_an_error",)),
    M("h18_synth_overwrites_foreign", "nanobark/cli/synthesize.py", "if not args.overwrite:\n        check_foreign(",
      "if False:\n        check_foreign(", "synthesize writes over files in --out-dir that no manifest line records",
      ("tests/test_synthesize.py::test_files_in_out_dir_this_job_did_not_make_are_refused",)),
    M("h18_out_compares_names", "nanobark/cli/speak.py", "if path is not None and same_file(out, path):",
      "if path is not None and out == path:", "--out is compared with the inputs by name, not as a file",
      ("tests/test_cli.py::test_out_that_is_the_recording_being_cloned_is_refused",
       "tests/test_cli.py::test_clone_out_that_is_the_recording_is_refused")),
    M("h18_out_no_input_check", "nanobark/cli/speak.py", "        check_not_an_input(out, inputs)\n", "",
      "the speak command writes --out over the recording it clones",
      ("tests/test_cli.py::test_out_that_is_the_recording_being_cloned_is_refused",)),
    M("h18_full_disk_unnamed", "nanobark/files.py", "            if code in FULL:\n", "            if False:\n",
      "a full disk in a conversion's stage files is reported as the writer's raw error, naming no disk",
      ("tests/test_reliability.py::test_a_full_disk_anywhere_in_a_conversion_is_one_line_and_nothing_finished",)),
    # ---- issue 18 bounded inputs (none reads /dev/zero unbounded: a mutant must not fill the memory or disk)
    M("bounded_any_file_type", "nanobark/files.py", "    if not stat.S_ISREG(st.st_mode):", "    if False:",
      "read_bounded reads devices and FIFOs: /dev/zero is read to the limit, a FIFO hangs",
      ("tests/test_files.py::test_read_bounded_refuses_devices_fifos_and_oversized_files_with_one_line",)),
    M("bounded_reads_it_all", "nanobark/files.py", "chunk = f.read(min(CHUNK, limit + 1 - size))",
      "chunk = f.read(CHUNK)", "read_bounded reads whole chunks past its limit (a 1 GB chunk would be read whole)",
      ("tests/test_files.py::test_read_bounded_reads_at_most_one_byte_past_its_limit",)),
    M("bounded_limit_refused", "nanobark/files.py", "    if size > limit:", "    if size >= limit:",
      "a file of exactly the limit is refused",
      ("tests/test_files.py::test_read_bounded_reads_a_file_up_to_its_limit_whole_and_in_chunks",)),
    M("manifest_own_read", "nanobark/cli/manifest.py", 'raw = read_bounded(path, MAX_MANIFEST_BYTES, "the manifest")',
      'raw = open(path, "rb").read(MAX_MANIFEST_BYTES + 1)',
      "the manifest is capped by its own read, which takes devices (and would hang on a FIFO)",
      (SYNTH + "an_endless_or_oversized_manifest_is_a_usage_error_before_loading",)),
    M("speak_file_own_read", SPEAK,
      'text = read_bounded(args.file, 4 * MAX_TEXT_CHARS, "--file").decode("utf-8")',
      'text = open(args.file, encoding="utf-8").read(MAX_TEXT_CHARS + 1)',
      "--file is capped in characters by its own read: /dev/zero is read, a FIFO hangs",
      ("tests/test_cli.py::test_an_endless_or_oversized_text_file_is_one_usage_line",)),
    M("convert_side_files_unbounded", "nanobark/weights/convert/folder.py",
      'os.path.join(out_dir, name), MAX_SIDE_FILE, "the model file")',
      'os.path.join(out_dir, name), 1 << 62, "the model file")',
      "a snapshot's vocab.txt or preset index is copied whatever its size",
      ("tests/test_convert.py::test_a_snapshot_file_that_is_a_device_fifo_or_oversized_is_refused_by_name",)),
    M("convert_presets_unbounded", "nanobark/weights/convert/folder.py",
      'MAX_SIDE_FILE, "the voice preset")', '1 << 62, "the voice preset")',
      "a snapshot's preset files are copied whatever their size",
      ("tests/test_convert.py::test_a_snapshot_file_that_is_a_device_fifo_or_oversized_is_refused_by_name",)),
    M("convert_config_unbounded", "nanobark/weights/convert/folder.py",
      """read_json(files["config.json"], "the model's config")""",
      """read_json(files["config.json"], "the model's config", 1 << 62)""",
      "a snapshot's config.json is read whatever its size",
      ("tests/test_convert.py::test_a_snapshot_file_that_is_a_device_fifo_or_oversized_is_refused_by_name",)),
    M("convert_source_sizes_unchecked", "nanobark/weights/convert/folder.py",
      "    problems = size_problems(stage, cfg, shapes)\n", "    problems = []\n",
      "a source config.json asking for 10^6 layers is built (on the meta device) before anything is checked",
      ("tests/test_convert.py::test_a_source_config_asking_for_more_than_its_weights_is_refused_before_building",)),
    M("pickle_views_unchecked", "nanobark/weights/convert/folder.py", "        _check_views(loaded, path)\n", "",
      "a pickled checkpoint of expanded (stride-0) views is converted into gigabytes",
      ("tests/test_convert.py::test_a_pickled_tensor_that_views_fewer_elements_than_it_has_is_refused",
       "tests/test_convert.py::test_a_snapshot_of_expanded_tensors_is_refused_by_the_command_before_converting")),
    M("audio_cost_in_seconds", AUDIO, "if (f.frames - start) * f.channels > MAX_SAMPLES:",
      "if (f.frames - start) > MAX_SAMPLES:", "a recording is bounded in frames, not samples: 1024 channels pass",
      (AUDIO_TESTS + "::test_a_recording_that_would_decode_to_gigabytes_is_refused_from_its_header",)),
    M("audio_any_rate", AUDIO, "if f.samplerate > MAX_RATE:", "if False:",
      "a 240 MHz recording is read: 30 s of it is the whole sparse file",
      ("tests/test_cli.py::test_a_recording_that_would_decode_to_gigabytes_is_a_usage_error_before_loading",)),
    # ---- issue 18 classes 4 and 5
    M("voice_headers_unchecked", "nanobark/voices.py", "        _check_headers(path)\n", "",
      "a voice .npz whose member header declares terabytes is allocated: MemoryError escapes VoiceError",
      ("tests/test_voices.py::test_forged_member_headers_are_refused_before_allocating",
       "tests/test_cli.py::test_a_voice_file_with_a_forged_header_is_a_usage_error_before_loading")),
    M("clone_pair_unchecked", "nanobark/cloning.py", "check_clip(audio, sample_rate) if isinstance(audio, tuple)",
      "audio if isinstance(audio, tuple)",
      "any tuple is cloned as (24 kHz, 16 kHz) audio and sample_rate is ignored",
      ("tests/test_cloning.py::test_a_tuple_is_taken_only_as_the_checked_pair_load_clip_returns",)),
    M("quantizer_folder_unchecked", "nanobark/cli/speak.py", "os.path.isdir(quantizer) and not converted",
      "False", "a folder without quantizer.safetensors as --quantizer fails after loading, advising to delete it",
      ("tests/test_cloning.py::test_a_recording_or_a_plain_folder_as_quantizer_is_a_usage_error_before_loading",)),
    M("stderr_closed_to_stdout", "nanobark/cli/__init__.py", "    if sys.stderr is None:", "    if False:",
      "with standard error closed, messages are printed into stdout's audio stream (or the progress bar crashes)",
      ("tests/test_cli.py::test_with_standard_error_closed_nothing_but_audio_goes_to_standard_output",)),
    M("audio_any_peak", AUDIO, "    if loud.any():", "    if False:",
      "speech scaled to 1e38 is cloned into a voice whose codes are all 0",
      (AUDIO_TESTS + "::test_samples_far_outside_full_scale_are_refused",
       "tests/test_cloning.py::test_a_recording_far_beyond_full_scale_is_a_usage_error_before_cloning")),
    M("temp_name_uncut", "nanobark/files.py", "    while len(os.fsencode(name)) > NAME_MAX - 1 - len(suffix):\n",
      "    while False:\n", "a legal 238-255 byte name fails after all the work: its temporary name is too long",
      ("tests/test_files.py::test_a_legal_name_of_up_to_255_bytes_is_written_and_its_temporary_is_cleaned_up",)),
    # ---- issue 18, the rest: classes 4 and 5, the walkthrough
    M("n_codes_given_unchecked", CKPT, "    if not (type(given) is int and 0 <= given <= N_COARSE):",
      "    if False:", "a config with n_codes_given 9 is converted and loaded; speech fails after two stages",
      (CKPT_SIZES, SOURCE_SIZES)),
    M("stdout_closed_unsaid", CLI_INIT, "    if sys.stdout is None:  # closed", "    if False:  # closed",
      "with standard output closed, `nanobark voices` exits 0 having printed nothing",
      ("tests/test_cli.py::test_with_standard_output_closed_the_command_says_so_and_exits_2",)),
    M("utf8_names_unchecked", "nanobark/files.py", '        os.fspath(path).encode("utf-8")\n',
      '        os.fspath(path).encode("utf-8", "surrogateescape")\n',
      "a name with a byte that is not UTF-8 reaches soundfile: --out fails after the work, an id aborts every run",
      ("tests/test_cli.py::test_names_that_are_not_utf8_are_usage_errors_before_loading",
       "tests/test_synthesize.py::test_a_wrong_row_is_named_by_its_line_and_the_others_go_on")),
    M("clone_zero_codes_unchecked", "nanobark/cloning.py", "    if not bool(codes.any()):", "    if False:",
      "a voice whose codes are all 0 (NaN latents) is returned, and the clone command says it succeeded",
      ("tests/test_cloning.py::test_a_voice_of_all_zero_codes_is_an_error_not_a_voice",)),
    M("clone_pair_peak_unchecked", "nanobark/cloning.py", "    if peak > MAX_PEAK:", "    if False:",
      "clone_voice given a pair of samples scaled to 1e12 clones it (a file of them is refused)",
      ("tests/test_cloning.py::test_a_pair_far_beyond_full_scale_or_silent_is_refused_as_a_recording_is",)),
    M("clone_cache_unused", "nanobark/cloning.py", "    if kept is not None and os.path.isfile(kept):",
      "    if False:", "a recording given as --voice is cloned again on every run",
      ("tests/test_cloning.py::test_a_recording_is_cloned_once_keyed_by_its_content",
       "tests/test_cloning.py::test_speak_with_a_recording_says_what_it_does_and_clones_it_once")),
    M("clone_cache_keyed_by_name", "nanobark/cloning.py",
      'key = hashlib.sha256(wav24.numpy().astype("<f4").tobytes())', 'key = hashlib.sha256(b"")',
      "the cache key leaves out the recording: another recording gets the first one's voice",
      ("tests/test_cloning.py::test_a_recording_is_cloned_once_keyed_by_its_content",)),
    M("progress_silent_while_running", "nanobark/progress.py", "        elif not finished and now - last >= HEARTBEAT:",
      "        elif False:", "a stage that runs for minutes prints nothing in a log until it ends",
      ("tests/test_cli.py::test_a_stage_without_a_terminal_says_it_is_running_once_a_minute",)),
    M("progress_transient_quiet", PROGRESS, '        return _line(("  " if transient else "") + desc, unit)',
      '        return _line(desc, unit) if not transient else lambda done, total: None',
      "long form's stages print nothing in a log: --continuity voice is silent until its batch ends",
      ("tests/test_cli.py::test_progress_without_a_terminal_is_one_line_per_stage_and_segment",)),
    M("semantic_bar_total_768", G, "progress(n + 1, min(MAX_SEMANTIC_TOKENS, max(cap, n + 1)))",
      "progress(n + 1, MAX_SEMANTIC_TOKENS)", "with --max-duration the semantic bar still counts to 768",
      ("tests/test_cli.py::test_the_semantic_bar_counts_to_the_max_duration_cap",)),
    M("ctrl_c_bar_kept", "nanobark/cli/__init__.py", "    except KeyboardInterrupt as e:\n        close_bars()",
      "    except KeyboardInterrupt as e:\n        pass", "after a Ctrl-C the bar is drawn again below the message",
      ("tests/test_cli.py::test_a_ctrl_c_erases_the_bar_before_its_message",)),
    M("mp3_written_by_lame", SPEAK, '    if fmt != "MP3":', "    if True:",
      "an MP3 cut short by a full disk replaces the old file (LAME says nothing, and it reads back whole)",
      ("tests/test_cli.py::test_a_full_disk_that_cuts_the_audio_short_exits_1_and_keeps_the_old_file",)),
    M("close_names_case_sensitive", "nanobark/voices.py", "get_close_matches(name.casefold(), by_case",
      "get_close_matches(name, by_case", "v2/EN_SPEAKER_6 gets no close-name suggestion",
      ("tests/test_voices.py::test_unknown_name_lists_close_names",)),
    M("stdin_read_unbounded", SPEAK, 'read_stream(sys.stdin.buffer, 4 * MAX_TEXT_CHARS, "standard input")',
      'read_stream(sys.stdin.buffer, 1 << 62, "standard input")', "standard input is read whatever its size",
      ("tests/test_cli.py::test_standard_input_is_read_bounded_as_a_file_is",)),
    M("silence_flag_ignored", "nanobark/cli/synthesize.py", "silence=args.silence if r.silence is None else r.silence",
      "silence=r.silence", "synthesize --silence is not the default of rows without their own",
      (SYNTH + "silence_flag_is_the_default_of_long_rows_without_their_own",)),
    M("damaged_index_is_usage", SPEAK, "    except DamagedModel:\n        raise  # the model's file, not the argument",
      "    except ():\n        raise  # the model's file, not the argument",
      "a model's damaged preset index is reported as a bad --voice (exit 2)",
      ("tests/test_cli.py::test_a_model_s_damaged_preset_index_is_a_runtime_failure_not_a_usage_error",)),
]
# fmt: on


def die(message):
    print(message, file=sys.stderr)
    sys.exit(2)


def problems(mutants, root):
    """Why each broken mutant cannot be applied in `root` (empty when all are fine)."""
    out = [f"duplicate id {m.id}" for i, m in enumerate(mutants) if m.id in [n.id for n in mutants[:i]]]
    for m in mutants:
        path = Path(root, m.file)
        count = path.read_text(encoding="utf-8").count(m.old) if path.is_file() else 0
        if count != 1:
            out.append(f"{m.id}: {m.old!r} occurs {count} times in {m.file} (must be exactly once)")
        out += [
            f"{m.id}: no test file {t}" for t in m.tests if not os.path.exists(os.path.join(root, t.split("::")[0]))
        ]
    return out


def copy_tree(dest):
    # no __pycache__: stale bytecode must never stand in for a mutated file
    for name in COPIED:
        src = os.path.join(ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name), ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dest)


def env_for(copy):
    # PYTHONPATH beats the editable install; no bytecode, so a mutant of the same size and mtime second as
    # the previous one cannot be served from a stale .pyc
    return {**os.environ, "PYTHONPATH": copy, "PYTHONDONTWRITEBYTECODE": "1"}


def probe(copy):
    """Fail loudly unless `import nanobark, weights_convert` in the copy's environment loads the copy."""
    code = "import nanobark, weights_convert; print(nanobark.__file__); print(weights_convert.__file__)"
    files = subprocess.run(
        [sys.executable, "-c", code], cwd=copy, env=env_for(copy), capture_output=True, text=True, check=True
    ).stdout.split()
    if not files or not all(f.startswith(copy + os.sep) for f in files):
        die(f"the copy is not what the tests would import: {files}")


def run_pytest(copy, tests, timeout):
    """-> (fate, pytest exit code or None, the first failing test or last output line)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    # a new session, so a timeout can kill pytest together with any subprocess it started
    proc = subprocess.Popen(
        cmd,
        cwd=copy,
        env=env_for(copy),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "timeout", None, f"over {timeout} s"
    lines = [x for x in out.splitlines() if x.strip()]
    caught = next((x for x in lines if x.startswith(("FAILED ", "ERROR "))), lines[-1] if lines else "")
    fate = {0: "survived", 1: "killed"}.get(proc.returncode, "error")
    return fate, proc.returncode, caught[:200]


def run_mutant(m, copy, timeout):
    path = Path(copy, m.file)
    original = path.read_text(encoding="utf-8")
    # the hypothesis example database would replay one mutant's failures against the next
    shutil.rmtree(os.path.join(copy, ".hypothesis"), ignore_errors=True)
    start = time.monotonic()
    try:
        path.write_text(original.replace(m.old, m.new), encoding="utf-8")
        fate, code, caught = run_pytest(copy, m.tests, timeout)
    finally:
        path.write_text(original, encoding="utf-8")
    return dict(
        m._asdict(),
        tests=list(m.tests),
        fate=fate,
        exit_code=code,
        caught_by=caught,
        seconds=round(time.monotonic() - start, 1),
    )


def markdown(results):
    rows = ["| id | file | bug | tests | fate | s |", "|---|---|---|---|---|---|"]
    for r in results:
        tests = ", ".join(t.replace("tests/", "") for t in r["tests"])
        rows.append(f"| {r['id']} | {r['file']} | {r['bug']} | {tests} | {r['fate']} | {r['seconds']:.0f} |")
    n = len(results)
    count = {f: sum(r["fate"] == f for r in results) for f in ("killed", "survived", "error", "timeout")}
    caught = count["killed"] + count["error"]
    rows.append(
        f"\n{n} mutants, {caught} killed ({count['error']} of them by an error), {count['survived']} survived,"
        f" {count['timeout']} timed out; kill rate {100 * caught / max(n, 1):.0f}%."
    )
    return "\n".join(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated mutant ids")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--check", action="store_true", help="only check that every snippet occurs exactly once")
    p.add_argument("--json", metavar="OUT", help="write the results to this JSON file")
    p.add_argument("--markdown", action="store_true", help="print a results table for docs/testing.md")
    p.add_argument("--timeout", type=float, default=600, help="seconds per mutant (default 600)")
    args = p.parse_args()
    mutants = MUTANTS
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - {m.id for m in MUTANTS})
        if unknown:
            die(f"unknown mutant ids: {', '.join(unknown)} (see --list)")
        mutants = [m for m in MUTANTS if m.id in wanted]
    if args.list:
        for m in mutants:
            print(f"{m.id:28} {m.file:24} {m.bug}  [{' '.join(m.tests)}]")
        return 0
    bad = problems(mutants, ROOT)
    print("\n".join(bad) or f"all {len(mutants)} mutants apply (each snippet found exactly once)", file=sys.stderr)
    if bad or args.check:
        return 2 if bad else 0
    results = []
    with tempfile.TemporaryDirectory(prefix="nanobark-mutants-") as copy:
        copy = os.path.realpath(copy)
        copy_tree(copy)
        if problems(mutants, copy):  # the tree changed between the check and the copy
            die("the working tree changed while it was copied; run again")
        probe(copy)
        for i, m in enumerate(mutants, 1):
            print(f"[{i}/{len(mutants)}] {m.id} ...", end=" ", file=sys.stderr, flush=True)
            results.append(r := run_mutant(m, copy, args.timeout))
            print(
                r["fate"], "in", r["seconds"], "s ", r["caught_by"] if r["fate"] != "survived" else "", file=sys.stderr
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.markdown:
        print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
