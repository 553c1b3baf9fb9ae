"""``@configured_timer``: nameko's ``@timer`` with its interval read from config at start-up."""
from nameko.timer import Timer

from imagepipe.configvalues import positive


class ConfiguredTimer(Timer):
    def __init__(self, config_key, default, **kwargs):
        super().__init__(interval=default, **kwargs)
        self.config_key = config_key

    def setup(self):
        self.interval = positive(self.container.config.get(self.config_key), self.config_key,
                                 self.interval)
        super().setup()


configured_timer = ConfiguredTimer.decorator
