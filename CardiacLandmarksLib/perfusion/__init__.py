"""perfusion"""
