"""Tokenizer and chat template for the decoder models (GGUF files and Hugging Face directories).

`Tokenizer` wraps a `tokenizers.Tokenizer` (the Rust fast tokenizer) together with what generation
needs around it: the chat template, the BOS/EOS/PAD ids and the set of ids that end generation.

    tok = Tokenizer.from_gguf(path)            # or a gguf.GGUFReader already opened for the weights
    ids = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], add_generation_prompt=True)
    text = tok.decode(ids)

GGUF support (`tokenizer.ggml.*` metadata, as written by llama.cpp's converters):

* `tokenizer.ggml.model == "gpt2"` (byte-level BPE) with the pre-tokenizer named by
  `tokenizer.ggml.pre` (see `GGUF_PRE_TOKENIZERS`). Token type CONTROL becomes a special added token
  and USER_DEFINED a non-special added token, so both are matched whole in text (`"<|im_start|>"` in
  a string encodes to its id, as in Hugging Face tokenizers).
* Other models ("llama" = SentencePiece, "bert", "t5", ...) raise NotImplementedError.

Deliberate choices (where references disagree or leave room):

* "smollm" splits every numeric character into its own pre-token before the GPT-2 byte-level
  regex, as SmolLM2's own `tokenizer.json` (Digits(individual_digits) + ByteLevel) and llama.cpp do.
  transformers' GGUF conversion drops the digit split; that changes the ids only where a run of
  two or more whitespace characters precedes a number (e.g. "\\n\\n1"), and there we follow the
  real tokenizer.
* "default" (written when the converter did not recognise the pre-tokenizer) is read as GPT-2's
  regex, as transformers does; llama.cpp's fallback regex for it differs (it splits punctuation
  runs and 3-digit groups first). A file with "default" is best re-converted.
* `eos_token_ids` = the primary EOS, then generation_config.json's eos ids (HF directories) or
  `tokenizer.ggml.eot_token_id`/`eom_token_id` (GGUF), then every *special* token whose text is a
  well-known end-of-turn/end-of-text marker (`END_MARKERS`: `<|im_end|>`, `<|eot_id|>`,
  `<|endoftext|>`, ...), in that order, without duplicates (modelled on llama.cpp's end-of-
  generation set). For SmolLM2: (2 = `<|im_end|>`, 0 = `<|endoftext|>`).
* `apply_chat_template(tokenize=True)` encodes the rendered text without the post-processor (like
  transformers), then puts BOS in front only when this tokenizer adds BOS on plain `encode` and the
  template did not already emit it, so BOS never appears twice and never goes missing
  (transformers would leave it out).

Performance note: `gguf.GGUFReader` takes seconds on a vocabulary of ~50k tokens (it builds numpy
views per array element); pass the reader the weight loader already opened to parse the file once.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import gguf
import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox
import tokenizers
from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors

# Pre-tokenizer regexes, named after the models that introduced them.
# GPT-2's is built into tokenizers' ByteLevel pre-tokenizer (use_regex=True), so it is not spelled
# out here. Llama 3: contractions case-insensitive, letters may take one leading non-letter, numbers
# in groups of up to three, punctuation runs keep their trailing newlines.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2: the Llama 3 regex with every number split into single digits.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# `tokenizer.ggml.pre` values understood by `Tokenizer.from_gguf` for model "gpt2". To support a new
# one, add its name to this tuple and a branch to `_byte_level_pipeline`.
GGUF_PRE_TOKENIZERS = (
    "default",
    "gpt2",
    "smollm",
    "starcoder",
    "refact",
    "llama-bpe",
    "qwen2",
)

# Texts of special tokens that end a turn or a document in common chat formats (ChatML, Llama 3,
# Phi-3, Gemma, GPT-2/StarCoder, ...). A special token with one of these texts ends generation.
END_MARKERS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
    "<EOT>",
)

_HF_TOKEN_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
)


class Tokenizer:
    """Wraps a `tokenizers.Tokenizer` plus the chat template and special-token ids.

    Build one with `Tokenizer.from_gguf` or `Tokenizer.from_hf_dir`; the constructor is for
    callers that already hold a `tokenizers.Tokenizer`.

    Attributes:
      backend: the underlying `tokenizers.Tokenizer`.
      chat_template: the Jinja chat template, or None if the source had none.
      bos_token, eos_token, pad_token, unk_token: special-token texts (or None).
      bos_token_id, eos_token_id, pad_token_id, unk_token_id: their ids (or None).
      eos_token_ids: every id that ends generation (see the module docstring for the rule).
      add_bos_token: whether `encode(..., add_special_tokens=True)` puts BOS in front.
      vocab_size: number of ids, added tokens included (an upper bound on every id, plus one).
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        chat_template: str | None = None,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        unk_token: str | None = None,
        extra_eos_token_ids: Iterable[int] = (),
    ):
        self.backend = backend
        self.chat_template = chat_template
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self.bos_token, self.bos_token_id = self._special(bos_token, "bos_token")
        self.eos_token, self.eos_token_id = self._special(eos_token, "eos_token")
        self.pad_token, self.pad_token_id = self._special(pad_token, "pad_token")
        self.unk_token, self.unk_token_id = self._special(unk_token, "unk_token")

        eos_ids = [] if self.eos_token_id is None else [self.eos_token_id]
        for i in extra_eos_token_ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(
                    f"end-of-generation id {i} is outside the vocabulary [0, {self.vocab_size})"
                )
            eos_ids.append(i)
        for i, added in sorted(backend.get_added_tokens_decoder().items()):
            if added.special and added.content in END_MARKERS:
                eos_ids.append(i)
        self.eos_token_ids: tuple[int, ...] = tuple(dict.fromkeys(eos_ids))

        probe = backend.encode("", add_special_tokens=True).ids
        self.add_bos_token = self.bos_token_id is not None and probe[:1] == [self.bos_token_id]
        self._compiled_templates: dict[str, jinja2.Template] = {}
        # Non-special added tokens whose text the decoder would garble (e.g. a GGUF USER_DEFINED
        # token "é!" in a byte-level vocabulary: the ByteLevel decoder reads "é" as byte 0xE9).
        # `decode` writes these verbatim, as llama.cpp does.
        self._verbatim: dict[int, str] = {
            i: added.content
            for i, added in backend.get_added_tokens_decoder().items()
            if not added.special and backend.decode([i]) != added.content
        }

    def _special(self, token: str | None, name: str) -> tuple[str | None, int | None]:
        if token is None:
            return None, None
        i = self.backend.token_to_id(token)
        if i is None:
            raise ValueError(f"{name} {token!r} is not in the vocabulary")
        return token, i

    def __repr__(self) -> str:
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, bos={self.bos_token!r}, "
            f"eos={self.eos_token!r}, eos_token_ids={self.eos_token_ids}, "
            f"chat_template={'yes' if self.chat_template else 'no'})"
        )

    # ------------------------------------------------------------------------------------------
    # Constructors.
    # ------------------------------------------------------------------------------------------

    @classmethod
    def from_gguf(cls, path_or_reader: str | os.PathLike | gguf.GGUFReader) -> Tokenizer:
        """Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.

        Args:
          path_or_reader: a .gguf path, or a `gguf.GGUFReader` (reuse the weight loader's: parsing
            a 50k-token vocabulary takes the reader seconds).
        Raises:
          FileNotFoundError: the path does not exist.
          ValueError: the file is not a GGUF file, has no tokenizer, or names an unknown
            pre-tokenizer.
          NotImplementedError: the tokenizer model is not byte-level BPE ("gpt2").
        """
        if isinstance(path_or_reader, gguf.GGUFReader):
            reader = path_or_reader
            source = str(getattr(reader.data, "filename", None) or "GGUF reader")
        else:
            source = os.fspath(path_or_reader)
            if not os.path.isfile(source):
                raise FileNotFoundError(f"GGUF file not found: {source}")
            try:
                reader = gguf.GGUFReader(source)
            except (ValueError, OSError) as e:
                raise ValueError(f"{source} could not be read as a GGUF file: {e}") from e

        def field(key: str, default: Any = None) -> Any:
            f = reader.fields.get(key)
            return default if f is None else f.contents()

        model = field("tokenizer.ggml.model")
        if model is None:
            raise ValueError(
                f"{source} has no tokenizer (metadata key tokenizer.ggml.model is missing)"
            )
        if model != "gpt2":
            raise NotImplementedError(
                f"{source}: GGUF tokenizer model {model!r} is not supported; only 'gpt2' (byte-"
                "level BPE: GPT-2, Llama 3, Qwen2, SmolLM) is. SentencePiece ('llama') and others "
                "need a Hugging Face tokenizer directory (Tokenizer.from_hf_dir)."
            )
        pre = field("tokenizer.ggml.pre", "default")
        if pre not in GGUF_PRE_TOKENIZERS:
            raise ValueError(
                f"{source}: unknown GGUF pre-tokenizer tokenizer.ggml.pre={pre!r}; "
                f"supported: {', '.join(GGUF_PRE_TOKENIZERS)}"
            )
        if field("tokenizer.ggml.add_space_prefix", False):
            raise NotImplementedError(
                f"{source}: add_space_prefix=True with a byte-level BPE vocabulary is not supported"
            )

        tokens = field("tokenizer.ggml.tokens")
        merges = field("tokenizer.ggml.merges")
        if not tokens or merges is None:
            raise ValueError(
                f"{source}: tokenizer.ggml.tokens and tokenizer.ggml.merges are "
                "required for a 'gpt2' tokenizer"
            )
        token_types = field("tokenizer.ggml.token_type") or [int(gguf.TokenType.NORMAL)] * len(
            tokens
        )
        if len(token_types) != len(tokens):
            raise ValueError(f"{source}: {len(tokens)} tokens but {len(token_types)} token types")

        def token_at(key: str) -> str | None:
            i = field(f"tokenizer.ggml.{key}")
            if i is None:
                return None
            if not 0 <= i < len(tokens):
                raise ValueError(
                    f"{source}: tokenizer.ggml.{key}={i} is outside the "
                    f"vocabulary [0, {len(tokens)})"
                )
            return tokens[i]

        backend = _byte_level_tokenizer(
            tokens, merges, token_types, pre=pre, source=source,
            bos=token_at("bos_token_id"), eos=token_at("eos_token_id"),
            add_bos=bool(field("tokenizer.ggml.add_bos_token", False)),
            add_eos=bool(field("tokenizer.ggml.add_eos_token", False)),
        )  # fmt: skip
        extra = [field(f"tokenizer.ggml.{k}") for k in ("eot_token_id", "eom_token_id")]
        return cls(
            backend,
            chat_template=field("tokenizer.chat_template"),
            bos_token=token_at("bos_token_id"),
            eos_token=token_at("eos_token_id"),
            pad_token=token_at("padding_token_id"),
            unk_token=token_at("unknown_token_id"),
            extra_eos_token_ids=[i for i in extra if i is not None],
        )

    @classmethod
    def from_hf_dir(cls, path: str | os.PathLike) -> Tokenizer:
        """Loads a Hugging Face tokenizer directory.

        Reads tokenizer.json (required; the "fast" format) and, when present,
        tokenizer_config.json (special tokens, chat_template), special_tokens_map.json,
        generation_config.json (eos_token_id: int or list) and chat_template.jinja (which wins over
        tokenizer_config.json's chat_template, as in transformers). BOS/EOS insertion on
        `encode(..., add_special_tokens=True)` is whatever tokenizer.json's post-processor does.

        Raises:
          FileNotFoundError: the directory or its tokenizer.json does not exist.
          ValueError: `path` is not a directory, or a special token is not in the vocabulary.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"tokenizer directory not found: {path}")
        if not os.path.isdir(path):
            raise ValueError(
                f"{path} is not a directory; from_hf_dir expects a Hugging Face "
                "tokenizer directory (use from_gguf for .gguf files)"
            )
        tokenizer_json = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(tokenizer_json):
            raise FileNotFoundError(
                f"{path} has no tokenizer.json; from_hf_dir expects a Hugging Face tokenizer "
                f"directory in the fast format (tokenizer.json, optionally with "
                f"{', '.join(_HF_TOKEN_FILES[1:])}). Found: {sorted(os.listdir(path))}"
            )
        backend = tokenizers.Tokenizer.from_file(tokenizer_json)

        def load_json(name: str) -> dict:
            p = os.path.join(path, name)
            if not os.path.isfile(p):
                return {}
            with open(p, encoding="utf-8") as f:
                return json.load(f)

        config = load_json("tokenizer_config.json")
        special_map = load_json("special_tokens_map.json")
        generation = load_json("generation_config.json")

        def special(name: str) -> str | None:
            value = config.get(name)
            if value is None:
                value = special_map.get(name)
            if isinstance(value, Mapping):  # {"content": "<s>", "lstrip": false, ...}
                value = value.get("content")
            return value

        template = config.get("chat_template")
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            named = {t["name"]: t["template"] for t in template}
            template = named.get("default", next(iter(named.values()), None))
        jinja_file = os.path.join(path, "chat_template.jinja")
        if os.path.isfile(jinja_file):
            with open(jinja_file, encoding="utf-8") as f:
                template = f.read()

        bos, eos, pad = special("bos_token"), special("eos_token"), special("pad_token")
        # generation_config.json ids stand in for special tokens the tokenizer files do not name.
        gen_eos = generation.get("eos_token_id")
        gen_eos = [] if gen_eos is None else [gen_eos] if isinstance(gen_eos, int) else gen_eos
        if eos is None and gen_eos:
            eos = backend.id_to_token(gen_eos[0])
        if bos is None and generation.get("bos_token_id") is not None:
            bos = backend.id_to_token(generation["bos_token_id"])
        if pad is None and generation.get("pad_token_id") is not None:
            pad = backend.id_to_token(generation["pad_token_id"])
        return cls(
            backend,
            chat_template=template,
            bos_token=bos,
            eos_token=eos,
            pad_token=pad,
            unk_token=special("unk_token"),
            extra_eos_token_ids=gen_eos,
        )

    # ------------------------------------------------------------------------------------------
    # Encoding and decoding.
    # ------------------------------------------------------------------------------------------

    def encode(self, text: str, *, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; special-token texts in it (e.g. "<|im_start|>") map to their ids.

        Args:
          text: the string to encode.
          add_special_tokens: apply the post-processor (BOS/EOS if the tokenizer adds them).
        Returns:
          [length] ids.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(
        self, texts: Iterable[str], *, add_special_tokens: bool = False
    ) -> list[list[int]]:
        """`encode` over a batch (in parallel in Rust); returns [batch][length] ragged ids."""
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"encode_batch expects strings, got {type(t).__name__}")
        return [
            e.ids for e in self.backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        ]

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        """Text of `ids` ([length], any int sequence or 1-D array).

        Raises:
          ValueError: an id is outside [0, vocab_size) (the backend would silently drop it).
        """
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(
                f"decode: ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size})"
            )
        if not self._verbatim or not any(i in self._verbatim for i in ids):
            return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)
        pieces, run = [], []
        for i in ids + [None]:
            if i is None or i in self._verbatim:
                if run:
                    pieces.append(self.backend.decode(run, skip_special_tokens=skip_special_tokens))
                    run = []
                if i is not None:
                    pieces.append(self._verbatim[i])
            else:
                run.append(i)
        return "".join(pieces)

    def token_to_id(self, token: str) -> int | None:
        """The id of a token text (in the vocabulary's own spelling, e.g. "Ġthe"), or None."""
        return self.backend.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        """The vocabulary's text for id `i` (e.g. "Ġthe"), or None if `i` is out of range."""
        return self.backend.id_to_token(int(i))

    # ------------------------------------------------------------------------------------------
    # Chat template.
    # ------------------------------------------------------------------------------------------

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = False,
        tokenize: bool = True,
        chat_template: str | None = None,
        **template_kwargs: Any,
    ) -> list[int] | str:
        """Renders a conversation with the chat template (Jinja, sandboxed, as transformers does).

        Args:
          messages: [{"role": "system" | "user" | "assistant" | ..., "content": str, ...}, ...].
          add_generation_prompt: end with the header of an assistant turn, ready to generate.
          tokenize: return ids (True) or the rendered string (False).
          chat_template: a template string to use instead of `self.chat_template`.
          **template_kwargs: extra template variables (e.g. tools=..., documents=...).
        Returns:
          [length] ids, or the rendered string.
        Raises:
          ValueError: no chat template, malformed messages, or the template called
            raise_exception (the message says why).
        """
        source = chat_template if chat_template is not None else self.chat_template
        if source is None:
            raise ValueError(
                "this tokenizer has no chat template; pass chat_template=... or "
                "format the prompt yourself"
            )
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            raise ValueError(
                "messages must be a list of {'role': ..., 'content': ...} dicts, got "
                f"{type(messages).__name__}"
            )
        for m in messages:
            if not isinstance(m, Mapping) or "role" not in m:
                raise ValueError(f"each message must be a dict with a 'role', got {m!r}")
        template = self._compiled_templates.get(source)
        if template is None:
            template = _jinja_environment().from_string(source)
            self._compiled_templates[source] = template
        context = {
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "unk_token": self.unk_token,
            **template_kwargs,
        }
        text = template.render(
            messages=[dict(m) for m in messages],
            add_generation_prompt=add_generation_prompt,
            **context,
        )
        if not tokenize:
            return text
        ids = self.encode(text, add_special_tokens=False)
        if self.add_bos_token and ids[:1] != [self.bos_token_id]:
            ids = [self.bos_token_id, *ids]
        return ids


# ----------------------------------------------------------------------------------------------
# GGUF byte-level BPE.
# ----------------------------------------------------------------------------------------------


def _byte_level_pipeline(pre: str) -> tuple[Any, Any, bool]:
    """(normalizer, pre_tokenizer, ignore_merges) for a `tokenizer.ggml.pre` value."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    gpt2 = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("default", "gpt2"):
        return None, gpt2, False
    if pre in ("smollm", "starcoder", "refact"):
        # Each numeric character alone, then the GPT-2 regex on what is left.
        return (
            None,
            pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), gpt2]),
            False,
        )
    if pre == "llama-bpe":
        split = pre_tokenizers.Split(tokenizers.Regex(LLAMA3_PATTERN), behavior="isolated")
        # Llama 3 looks a whole pre-token up in the vocabulary before merging (ignore_merges).
        return None, pre_tokenizers.Sequence([split, byte_level]), True
    if pre == "qwen2":
        split = pre_tokenizers.Split(tokenizers.Regex(QWEN2_PATTERN), behavior="isolated")
        return normalizers.NFC(), pre_tokenizers.Sequence([split, byte_level]), False
    raise AssertionError(f"GGUF_PRE_TOKENIZERS lists {pre!r} but it has no pipeline")


def _byte_level_tokenizer(
    tokens: list[str],
    merges: list[str],
    token_types: list[int],
    *,
    pre: str,
    source: str,
    bos: str | None,
    eos: str | None,
    add_bos: bool,
    add_eos: bool,
) -> tokenizers.Tokenizer:
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)  # a duplicated text keeps its first id
    pairs = []
    for m in merges:
        pair = tuple(m.split(" "))
        if len(pair) != 2:
            raise ValueError(f"{source}: merge {m!r} is not two tokens separated by one space")
        pairs.append(pair)
    normalizer, pre_tokenizer, ignore_merges = _byte_level_pipeline(pre)
    try:
        model = tokenizers.models.BPE(
            vocab, pairs, unk_token=None, fuse_unk=False, byte_fallback=False,
            ignore_merges=ignore_merges,
        )  # fmt: skip
    except Exception as e:  # tokenizers raises a bare Exception for merges outside the vocab
        raise ValueError(f"{source}: inconsistent BPE vocabulary/merges: {e}") from e
    tok = tokenizers.Tokenizer(model)
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()

    special, user_defined = [], []
    for t, ty in zip(tokens, token_types, strict=True):
        if not t:
            continue
        if ty == gguf.TokenType.CONTROL:
            special.append(AddedToken(t, special=True, normalized=False))
        elif ty == gguf.TokenType.USER_DEFINED:
            user_defined.append(AddedToken(t, special=False, normalized=False))
    tok.add_special_tokens(special)
    tok.add_tokens(user_defined)

    single, pair, specials = "$A:0", "$A:0 $B:1", []
    if add_bos and bos is not None:
        single, pair = f"{bos}:0 {single}", f"{bos}:0 $A:0 {bos}:1 $B:1"
        specials.append((bos, vocab[bos]))
    if add_eos and eos is not None:
        single = f"{single} {eos}:0"
        pair = pair.replace("$A:0", f"$A:0 {eos}:0") + f" {eos}:1"
        if eos != bos:
            specials.append((eos, vocab[eos]))
    tok.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=specials
    )
    return tok


# ----------------------------------------------------------------------------------------------
# Jinja environment for chat templates (the same features transformers gives templates).
# ----------------------------------------------------------------------------------------------


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (marks assistant text): renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message: str):
    raise ValueError(f"chat template: {message}")


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson HTML-escapes "<", ">" and "&", which would corrupt tool schemas.
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


_ENV: jinja2.sandbox.ImmutableSandboxedEnvironment | None = None


def _jinja_environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    global _ENV
    if _ENV is None:
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[_GenerationBlock, jinja2.ext.loopcontrols],
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        _ENV = env
    return _ENV
