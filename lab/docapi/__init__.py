"""docapi"""
