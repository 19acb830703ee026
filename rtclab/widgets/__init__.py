"""rtclab.widgets"""
