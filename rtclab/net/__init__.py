"""rtclab.net"""
