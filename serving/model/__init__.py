"""The model at run time: tokenise (`textprep`), load/verify/run a bundle (`bundle`, `onnx_session`),
find it in a folder or the registry (`source`), hold and hot-swap it (`holder`), and run it for
concurrent requests in a micro-batching pool (`batcher`); `two_stage` runs a static-embedding
bundle first and MiniLM only for the texts it is unsure about. No HTTP here; `serving.app` serves it.
"""
