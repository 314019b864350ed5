"""The controller <-> agent wire contract: .proto sources (``protos/``), the generated modules
(``_generated/``, never edited), and conversion between stored resources and messages."""
