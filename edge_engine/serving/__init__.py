"""Model serving: shared model-server processes, cross-pipeline batching, frames in shared memory.

* :mod:`~edge_engine.serving.instance_models`: which models an instance needs (``AI_ENGINE``,
  ``STARTUP_AI_ENGINE_PARAMS``), their effective config and its checks;
* :mod:`~edge_engine.serving.manager`: one server per (plugin, config), shared by the node's pipelines;
* :mod:`~edge_engine.serving.model_server`: a server's scheduler thread, worker processes, watchdog, restarts;
* :mod:`~edge_engine.serving.batcher`: the fair per-pipeline queue and when a batch leaves;
* :mod:`~edge_engine.serving.worker`: the model-server process itself;
* :mod:`~edge_engine.serving.frame_slots`: frame slots in shared memory (pipes as a fallback);
* :mod:`~edge_engine.serving.tickets`: tickets and requests, the pipeline side;
* :mod:`~edge_engine.serving.cascade`: second models on the boxes of a first (``CASCADE``, ``infer()``), crops
  packed in shared memory and answers aligned with their boxes;
* :mod:`~edge_engine.serving.server_stats`: the counters ``local_info.json`` shows;
* :mod:`~edge_engine.serving.onnx_plugin` and :mod:`~edge_engine.serving.onnx_info`: the onnxruntime base
  class for serving plugins, and reading a model's inputs without onnxruntime.

The pipeline side is :class:`edge_engine.runtime.serving_stage.ServingStage`. See ``docs/serving.md``.
"""
