"""DSPy's ``dspy.streaming`` import path (``from dspex.streaming import StreamListener, StatusMessage``): the
code is ``dspex.programs.streaming``."""

from ..programs.streaming import (StatusMessage, StatusMessageProvider, StatusStreamingCallback, StreamListener,
                                  StreamResponse, apply_sync_streaming, streamify, streaming_response)

__all__ = ["streamify", "StreamListener", "StreamResponse", "StatusMessage", "StatusMessageProvider",
           "StatusStreamingCallback", "streaming_response", "apply_sync_streaming"]
