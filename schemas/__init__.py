"""Message contracts of every sendguard topic: pydantic v2 models, no I/O.

Subscribers in other languages code against the JSON Schemas and the AsyncAPI document that
`sendguard schemas export` writes from these models.
"""
