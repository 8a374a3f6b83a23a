"""What the OpenAI surface adds to the application: Responses, Containers and their files, Files,
and Chat Completions, in the order their routes are matched and documented."""

from engine.server.openai import chat
from engine.server.openai.containers import api as containers_api
from engine.server.openai.containers import files as container_files
from engine.server.openai.files import api as files_api
from engine.server.openai.responses import api as responses_api
from engine.server.openai.state import FILES_DIR, running
from engine.server.runtime.surface import Surface


def _is_upload(path: str) -> bool:
    return path == "/v1/files" or (path.startswith("/v1/containers/") and path.endswith("/files"))


def surface() -> Surface:
    return Surface(
        name="openai",
        routers=(
            responses_api.router,
            containers_api.router,
            container_files.router,
            files_api.router,
            chat.router,
        ),
        is_upload=_is_upload,
        state_dirs=(FILES_DIR,),
        running=running,
    )
