"""confidence"""
