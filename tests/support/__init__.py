"""What the tests share, and what examples/ and bench/ may import too.

loopback/        OpenAI- and Ollama-protocol servers on 127.0.0.1 with switchable faults
llamacpp.py      a real llama.cpp server (tiny model) for the integration tests
redis_server.py  a real redis-server on a free loopback port, for the shared-state tests
state_workers.py a worker process of its own for tests/state/test_many_processes.py
examples/        unmodified OpenAI SDK example code (tests/client/test_dropin.py)

The test_*.py files here test the loopback servers themselves.
"""
