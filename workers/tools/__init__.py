"""The built-in tools' implementations (``builtin``, ``calculator``) and the testing tools.
The tool contract they follow (``@tool``, ``ToolContext``) is ``planner.tools``."""
