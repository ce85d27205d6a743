// /api/docs: Swagger UI from paygate's own static files (no CDN), under the pages' CSP.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    const root = document.getElementById("swagger-ui");
    if (!root || !window.SwaggerUIBundle) return;
    window.SwaggerUIBundle({
      url: root.dataset.openapiUrl,
      domNode: root,
      deepLinking: true,
      // No calls to validator.swagger.io: the document stays on this server.
      validatorUrl: null,
      tryItOutEnabled: false,
    });
  });
})();
