"""The LLM sample agent: chat, summarize, classify on Ollama or an OpenAI-compatible server."""
