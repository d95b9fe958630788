"""The public HTTP surface on TCP: the OpenAI API and ops endpoints."""
