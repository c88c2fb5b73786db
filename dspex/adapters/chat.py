"""ChatAdapter: DSPy's ``[[ ## field ## ]]`` marker format, demos as user/assistant turns."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from ..signature import SignatureMeta, type_name
from .base import NOT_SUPPLIED, Adapter, Message, field_description, render_value

MARKER = re.compile(r"\[\[ ## (\w+) ## \]\]")


def _block(name: str, value: str) -> str:
    return f"[[ ## {name} ## ]]\n{value}"


class ChatAdapter(Adapter):
    """Field markers (DSPy-compatible shape); parsing is tolerant of whitespace and order, strict on missing."""

    def system_message(self, signature: SignatureMeta) -> str:
        ins = "\n".join(f"{i}. {field_description(n, f)}" for i, (n, f) in enumerate(signature.input_fields.items(), 1))
        outs = "\n".join(f"{i}. {field_description(n, f)}" for i, (n, f) in enumerate(signature.output_fields.items(), 1))
        skeleton = "\n\n".join(_block(n, "{" + n + "}") for n in [*signature.input_fields, *signature.output_fields])
        return (f"Your input fields are:\n{ins}\nYour output fields are:\n{outs}\n"
                f"All interactions will be structured in the following way, with the appropriate values filled in.\n\n"
                f"{skeleton}\n\n[[ ## completed ## ]]\n"
                f"In adhering to this structure, your objective is: \n        {signature.instructions}")

    def user_message(self, signature: SignatureMeta, inputs: Mapping[str, Any], final: bool = True) -> str:
        parts = [_block(n, render_value(inputs[n]) if n in inputs else NOT_SUPPLIED) for n in signature.input_fields]
        if final:
            outs = signature.output_fields
            hints = [f"`[[ ## {n} ## ]]`" + ("" if f.annotation is str else f" (must be formatted as a valid Python "
                                                                           f"{type_name(f.annotation)})")
                     for n, f in outs.items()]
            parts.append(f"Respond with the corresponding output fields, starting with the field {hints[0]}"
                         + "".join(f", then {h}" for h in hints[1:])
                         + ", and then ending with the marker for `[[ ## completed ## ]]`.")
        return "\n\n".join(parts)

    def format_answer(self, signature: SignatureMeta, values: Mapping[str, Any]) -> str:
        blocks = [_block(n, render_value(values[n])) for n in signature.output_fields if n in values]
        return "\n\n".join([*blocks, "[[ ## completed ## ]]"])

    def format(self, signature: SignatureMeta, inputs: Mapping[str, Any],
               demos: Sequence[Mapping[str, Any]] = ()) -> list[Message]:
        self.check_inputs(signature, inputs)
        messages: list[Message] = [{"role": "system", "content": self.system_message(signature)}]
        for demo in demos:
            user = self.user_message(signature, demo, final=False)
            if not all(n in demo for n in signature.output_fields):
                user = "This is an example of the task, though some input or output fields are not supplied.\n\n" + user
            messages.append({"role": "user", "content": user})
            messages.append({"role": "assistant", "content": self.format_answer(signature, demo)})
        messages.append({"role": "user", "content": self.user_message(signature, inputs)})
        return messages

    def parse(self, signature: SignatureMeta, text: str) -> dict[str, Any]:
        sections: dict[str, str] = {}
        pieces = MARKER.split(text)
        for name, body in zip(pieces[1::2], pieces[2::2]):
            if name in signature.output_fields and name not in sections:
                sections[name] = body.strip()
        return self._coerce_all(signature, sections, text)
