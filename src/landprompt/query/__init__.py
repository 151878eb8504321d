"""Query: text prompts -> probability maps and top-k places over an embedding cube."""
