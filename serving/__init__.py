"""LLM servers: vLLM (GPU, production) and llama.cpp (CPU default), spoken to over the
OpenAI-compatible HTTP protocol only."""
