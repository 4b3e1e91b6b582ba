"""Screens of the workbench: one module per stage, the shell's dialogs, and the mode table."""

from tui.screens.chat import ChatScreen
from tui.screens.data import DataScreen
from tui.screens.eval_report import EvalScreen
from tui.screens.finetune import FinetuneScreen
from tui.screens.model import ModelScreen
from tui.screens.pretrain import PretrainScreen
from tui.screens.runs import RunsScreen
from tui.screens.tokenizer import TokenizerScreen

# mode name -> screen class, in the order of the keys 1-8
MODE_SCREENS = {
    "data": DataScreen,
    "tokenizer": TokenizerScreen,
    "model": ModelScreen,
    "pretrain": PretrainScreen,
    "finetune": FinetuneScreen,
    "eval": EvalScreen,
    "chat": ChatScreen,
    "runs": RunsScreen,
}

__all__ = ["MODE_SCREENS", "ChatScreen", "DataScreen", "EvalScreen", "FinetuneScreen", "ModelScreen",
           "PretrainScreen", "RunsScreen", "TokenizerScreen"]
