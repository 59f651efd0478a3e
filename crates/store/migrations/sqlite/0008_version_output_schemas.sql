-- The JSON Schema of a version's output, derived from its entrypoint's return annotation, as
-- text. NULL when the entrypoint has none, and for the versions published before it was kept.
ALTER TABLE tool_versions ADD COLUMN output_schema TEXT;
