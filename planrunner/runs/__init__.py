"""The engines behind ``apply``, ``status`` and ``cancel`` (contract sections 5 and 10).

``runs.apply`` sends a plan's entries exactly once; ``runs.watch`` looks up what apply
triggered; ``runs.cancel`` cancels what has not ended. Commands call them and render what
they return; nothing here prints.
"""
