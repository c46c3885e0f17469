"""mcpserver"""
