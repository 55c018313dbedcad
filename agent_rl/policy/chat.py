"""Turning chat messages into token ids, once, with the model's own chat template."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase


class ChatCodec:
    """Encodes prompts and responses for one tokenizer.

    Prompts go through the tokenizer's chat template with the generation prompt appended, so the
    response is whatever the model samples next. A response used as a training target (expert
    demonstrations) is encoded on its own and closed with the EOS token the model must learn to emit.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        if tokenizer.chat_template is None:
            raise ValueError(
                "the tokenizer has no chat template; use an instruct checkpoint or set tokenizer.chat_template"
            )
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; set tokenizer.eos_token")
        self.tokenizer = tokenizer

    @property
    def renders_tools(self) -> bool:
        """The chat template has native function calling (it reads the `tools` it is given)."""
        return "tools" in str(self.tokenizer.chat_template)

    def encode_prompt(
        self, messages: list[dict[str, str]], tools: list[dict[str, Any]] | None = None
    ) -> tuple[str, list[int]]:
        """The prompt text and ids; `tools` (JSON schemas, a tool env's `info["tools"]`) are rendered
        natively when the template has function calling (tool envs also describe them in the task text,
        which is what a model without it reads)."""
        extra = {"tools": tools} if tools and self.renders_tools else {}
        return self._template(messages, add_generation_prompt=True, **extra)

    def encode_response(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + [self.tokenizer.eos_token_id]

    def decode_response(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def encode_next_turn(self, message: dict[str, str]) -> list[int]:
        """The ids that follow an assistant turn ending in EOS: the template's close of that turn, `message`
        (the env's next user turn) and the generation prompt. Appended to a transcript's ids, they extend
        it without re-tokenizing anything the model sampled (the template must render turns as a prefix)."""
        dummy = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "x"}]
        prefix = self._template(dummy, add_generation_prompt=False)[1]
        full = self._template(dummy + [message], add_generation_prompt=True)[1]
        eos = self.tokenizer.eos_token_id
        if eos in prefix:  # the sampled turn ends at its EOS; what the template writes after it is ours to add
            prefix = prefix[:len(prefix) - prefix[::-1].index(eos)]
        if full[:len(prefix)] != prefix:
            raise ValueError("the chat template does not render a conversation as a prefix of its continuation, "
                             "so multi-turn episodes cannot be one token sequence with this tokenizer")
        return full[len(prefix):]

    def _template(self, messages: list[dict[str, str]], add_generation_prompt: bool,
                  **extra: Any) -> tuple[str, list[int]]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                  tokenize=False, **extra)
        return text, list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
